"""The served-answers ledger: what each model answered for a text, so a label sent later can be joined.

A synchronous answer has no id, so feedback names it by its text; serving records, for a deterministic
sample of distinct texts (``share("feedback", text hash) < sample``: the same texts in every environment,
chosen independently of whether a head was right, so accuracy over them is unbiased), one small item per
(text, model): the answering version with its stage, label and confidence, and every version compared on
that text (production beside a canary, a shadow beside production) with its rollout epoch. That is what
lets a label credit the version that answered, however late it comes, and feed the gate's paired test.

Cost: one write (one item of ~150 B, one write unit) per sampled distinct text per model, and only when
the entry changed: a text answered again the same way writes nothing (``remembered`` per environment).
``FeedbackLedgerSample`` sets the share; at 0.1 it adds ~0.1 write unit per distinct text, the order of
today's bulk path (0.08, docs/COST.md), and 0 turns it off. A text served again under another routing
overwrites its entry: the latest answer is the one feedback joins to.

Item layout (in ``MonitorTable``, TTL ``ttl``, so feedback may come as late as the table keeps it):
``pk = served#<text hash>``, ``sk = <model>``, ``w`` = the serving window, ``a`` = JSON
``[[version, stage, label, confidence, answered 0/1, epoch], ...]``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from topicserve.aws import AwsClient
from topicserve.dynamo import RetryPolicy, batch_put
from topicserve.feedback.model import Served, ServedAnswer
from topicserve.rollout.routing import PRODUCTION, SHADOW, share
from topicserve.rollout.tally import Observation

MAX_REMEMBERED = 50_000  # entries an environment remembers as written (a repeat of one writes nothing)
LedgerKey = tuple[str, str]  # model, text hash


class ServedLike(Protocol):
    """The part of :class:`~topicserve.service.BatchResult` the ledger reads."""

    @property
    def predictions(self) -> Mapping[str, Any]: ...

    @property
    def hashes(self) -> Sequence[str]: ...

    @property
    def versions(self) -> Mapping[str, str]: ...

    @property
    def rollout(self) -> Sequence[Observation]: ...


def sampled(h: str, sample: float) -> bool:
    return sample > 0 and share("feedback", "", h) < sample


def served_entries(result: ServedLike, window: str, sample: float) -> dict[LedgerKey, Served]:
    """One entry per (model, sampled distinct text) of a served result. Pure."""
    out: dict[LedgerKey, Served] = {}
    for model, predictions in result.predictions.items():
        observed = {o.stage: o for o in result.rollout if o.model == model}
        for p, h in zip(predictions, result.hashes, strict=True):
            if (model, h) in out or not sampled(h, sample):
                continue
            epoch = observed[p.stage].epoch if p.stage in observed else 0
            answers = [ServedAnswer(p.version, p.stage, p.label, p.top[0]["probability"], True, epoch)]
            if p.stage != PRODUCTION and p.stage in observed and h in observed[p.stage].answers:
                _, _, label, confidence = observed[p.stage].answers[h]
                answers.append(ServedAnswer(result.versions[model], PRODUCTION, label, confidence))
            shadow = observed.get(SHADOW)
            if shadow is not None and h in shadow.answers:
                label, confidence, _, _ = shadow.answers[h]
                answers.append(ServedAnswer(shadow.version, SHADOW, label, confidence, False, shadow.epoch))
            out[(model, h)] = Served(model, window, tuple(answers))
    return out


def ledger_item(h: str, served: Served, ttl: int) -> dict[str, Any]:
    return {
        "pk": {"S": f"served#{h}"},
        "sk": {"S": served.model},
        "w": {"S": served.window},
        "a": {"S": json.dumps([a.to_list() for a in served.answers], separators=(",", ":"))},
        "ttl": {"N": str(ttl)},
    }


def served_from_item(item: Mapping[str, Any]) -> Served:
    return Served(
        model=item["sk"]["S"],
        window=item["w"]["S"],
        answers=tuple(ServedAnswer.from_list(row) for row in json.loads(item["a"]["S"])),
    )


class ServedLedger:
    """Collects the entries of every served result; writes the new or changed ones when flushed."""

    def __init__(
        self, table: str, client: AwsClient, *, sample: float, ttl_seconds: int = 14 * 24 * 3600
    ) -> None:
        self.table = table
        self.ddb = client
        self.sample = sample
        self.ttl_seconds = ttl_seconds
        self.pending: dict[LedgerKey, Served] = {}
        self.written: dict[LedgerKey, tuple[ServedAnswer, ...]] = {}

    def observe(self, result: ServedLike, window: str) -> None:
        for key, served in served_entries(result, window, self.sample).items():
            if self.written.get(key) != served.answers:
                self.pending[key] = served

    def flush(self) -> int:
        """Write what is pending (raises on failure: the caller keeps it for the next flush)."""
        if not self.pending:
            return 0
        ttl = int(time.time()) + self.ttl_seconds
        batch = dict(self.pending)
        batch_put(
            self.ddb,
            self.table,
            [ledger_item(h, served, ttl) for (_, h), served in batch.items()],
            retry=RetryPolicy(),
        )
        for key, served in batch.items():
            self.pending.pop(key, None)
            if len(self.written) >= MAX_REMEMBERED:
                self.written.clear()
            self.written[key] = served.answers
        return len(batch)
