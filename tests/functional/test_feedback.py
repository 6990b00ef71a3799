"""POST /v1/feedback through the real API handler (canonical API Gateway and function URL events, moto).

The API function loads no model, so the served answers are put in the ledger as a predict function's
capture writes them (topicserve.feedback.ledger.ledger_item)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.functional.conftest import MODELS, api_event, body_of, invoke, load_module, moto_stack, url_event
from tests.helpers import create_table
from topicserve.feedback.ledger import ledger_item
from topicserve.feedback.model import Served, ServedAnswer
from topicserve.text import normalise, text_hash

TEXTS = ["The shuttle launch slipped a day.", "Our goalie stopped forty shots.", "Which X11 driver?"]
ANSWERED = ["sci.space", "rec.sport.hockey", "comp.graphics"]


@pytest.fixture(scope="module")
def api() -> Iterator[Any]:
    with moto_stack() as stack:
        ddb = stack["ddb"]
        create_table(ddb, "monitor", [("pk", "S", "HASH"), ("sk", "S", "RANGE")])
        create_table(ddb, "rollout", [("model", "S", "HASH"), ("record", "S", "RANGE")])
        os.environ.update(
            {"MODEL_NAMES": ",".join(MODELS), "MONITOR_TABLE": "monitor", "ROLLOUT_TABLE": "rollout"}
        )
        ttl = int(time.time()) + 3600
        for text, label in zip(TEXTS, ANSWERED, strict=True):
            served = Served(
                "logreg",
                "2026-12-06T23:00:00Z",
                (
                    ServedAnswer("2", "canary", label, 0.9, True, 5),
                    ServedAnswer("1", "production", label, 0.8),
                ),
            )
            ddb.put_item(TableName="monitor", Item=ledger_item(text_hash(normalise(text)), [served], ttl))
        yield load_module("functions.api.app")


def feedback(api: Any, payload: Any, **kw: Any) -> tuple[int, Any]:
    response = invoke(api, api_event("POST", "/v1/feedback", payload, **kw))
    return response["statusCode"], body_of(response)


def test_feedback_is_joined_to_the_answering_version_and_counted_once(api: Any) -> None:
    items = [{"text": TEXTS[0], "label": "sci.space"}, {"text": TEXTS[1], "label": "sci.med"}]
    status, answer = feedback(api, {"items": items})
    assert status == 200, answer
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (2, 0, [])
    first = answer["joined"][0]["models"]["logreg"]
    assert (first["model_version"], first["stage"], first["predicted"], first["correct"]) == (
        "2",
        "canary",
        "sci.space",
        True,
    )
    assert answer["joined"][1]["models"]["logreg"]["correct"] is False
    status, again = feedback(api, {"items": items})
    assert status == 200 and (again["accepted"], again["duplicates"]) == (0, 2)
    tally = api.rollout_store.get("logreg", "canary", "2", 5)
    assert (tally.labelled, tally.candidate_only_correct, tally.production_only_correct) == (2, 0, 0)
    quality = api.feedback.quality()[("logreg", "2")].summary()
    assert (quality["labelled"], quality["accuracy"], quality["stage"]) == (2, 0.5, "canary")


def test_the_function_url_front_door_takes_feedback_too(api: Any) -> None:
    response = invoke(
        api, url_event("POST", "/v1/feedback", {"items": [{"text": TEXTS[2], "label": "sci.med"}]})
    )
    assert response["statusCode"] == 200, response["body"]
    assert body_of(response)["accepted"] == 1


@pytest.mark.parametrize(
    ("payload", "status", "match"),
    [
        ({"items": [{"text": "never served here", "label": "sci.space"}]}, 400, "no served answer"),
        ({"items": [{"batch_id": "nope", "request_id": "r1", "label": "sci.space"}]}, 400, "no answered"),
        ({"items": [{"text": TEXTS[0], "label": "sci.spaaace"}]}, 400, "not one of the 20 classes"),
        ({"items": [{"text": TEXTS[0], "label": 7}]}, 400, "label must be a string"),
        ({"items": [{"text": ["a"], "label": "sci.space"}]}, 400, "must be a string"),
        ({"items": [{"request_id": "r1", "label": "sci.space"}]}, 400, "needs its batch_id"),
        ({"items": [{"text": TEXTS[0], "label": "sci.space"}] * 1001}, 400, "limit is 1000"),
        ({"items": "all of them"}, 400, "must be a list"),
        ({"labels": []}, 400, "unknown field"),
        ("{not json", 400, "not valid JSON"),
    ],
)
def test_bad_feedback_is_a_4xx_with_a_message(api: Any, payload: Any, status: int, match: str) -> None:
    raw = isinstance(payload, str)
    code, answer = feedback(api, payload, raw=raw)
    assert code == status, answer
    assert match in answer["error"]["message"]


def test_models_view_and_monitor_summary_show_live_quality(api: Any) -> None:
    response = invoke(api, api_event("GET", "/v1/models"))
    assert response["statusCode"] == 200, response["body"]
    quality = body_of(response)["models"]["logreg"]["quality"]
    live = quality["versions"]["2"]
    assert live["labelled"] >= 2 and live["accuracy_low"] <= live["accuracy"] <= live["accuracy_high"]
    assert live["ece"] is not None and "reference_accuracy" not in live  # v2 is not in this registry


def test_labelled_texts_are_archived_for_retraining(api: Any) -> None:
    from topicserve.feedback.store import LabelArchive

    archived = LabelArchive("artifacts", api.label_archive.s3).labelled()
    assert archived[normalise(TEXTS[0])] == "sci.space" and archived[normalise(TEXTS[2])] == "sci.med"
