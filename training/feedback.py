"""Label feedback as training data: the texts labelled through ``POST /v1/feedback``, for a candidate.

The API archives each call's labelled texts in the stack's bucket (``topicserve.feedback.store.
LabelArchive``); this reads them back (bucket and local endpoint from ``build/stack.json``) and adds them to
a training split, so drift -> labels -> candidate -> gated rollout is one loop:

    python -m training.candidate logreg --with-feedback --register --stage shadow

Texts that are also test texts are left out (the candidate's test accuracy must stay a held-out number),
and a text labelled several times keeps its latest label.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.common import REPO

STACK_JSON = REPO / "build" / "stack.json"


def archived_labels(stack_json: Path = STACK_JSON, s3: Any = None) -> dict[str, str]:
    """text -> label for every archived feedback text of the deployed stack."""
    from topicserve.feedback.store import LabelArchive

    stack = json.loads(stack_json.read_text())
    if s3 is None:
        import boto3

        if stack.get("endpoint_url"):  # the local cloud: its endpoint and dummy keys
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
        s3 = boto3.client(
            "s3", endpoint_url=stack.get("endpoint_url"), region_name=stack.get("region") or "us-east-1"
        )
    return LabelArchive(stack["bucket"], s3).labelled()


def feedback_rows(
    labelled: dict[str, str], names: Sequence[str], exclude: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """The feedback texts (not among ``exclude``, with a label of this build) and their label ids."""
    from topicserve.text import normalise

    held_out = {normalise(t) for t in exclude}
    ids = {name: i for i, name in enumerate(names)}
    rows = [(t, ids[label]) for t, label in labelled.items() if label in ids and normalise(t) not in held_out]
    return [t for t, _ in rows], np.asarray([y for _, y in rows], dtype=np.int64)
