"""The served-answers ledger: what each model answered for a text, so a label sent later can be joined.

A synchronous answer has no id, so feedback names it by its text; serving records, for a deterministic
sample of distinct texts (``share("feedback", text hash) < sample``: the same texts in every environment,
chosen independently of whether a head was right, so accuracy over them is unbiased), one small item per
text holding each model's entry: the answering version with its stage, label and confidence, and every
version compared on that text (production beside a canary, a shadow beside production) with its rollout
epoch. That is what lets a label credit the version that answered, however late it comes, and feed the
gate's paired test.

Cost: one write per sampled distinct text, however many models answered it, and only when an entry
changed: a text answered again the same way writes nothing (``ServedLedger.written``, per environment and
model). A flush writes each text once, an ``UpdateItem`` that ``SET``s the model entries it has: a batcher
pass that answered five models for a text writes once, and the item (~190 B for one model, ~550 B for
five, ~800 B with a candidate compared on every model) stays one write unit while it is <= 1 KB (an
update is billed on the larger of the item's sizes before and after), so a text answered by five models
costs what a text answered by one does. On the synchronous path each model's function writes its own
entry of the same item (one write per text and function that served it); a ``SET`` leaves the other
models' entries as they are. UpdateItem cannot be batched: a flush's updates go out several at a time
(:func:`topicserve.dynamo.set_attributes`). ``FeedbackLedgerSample`` sets the share; at 0.1 it adds ~0.1
write unit per distinct text (of the bulk path's ~0.25 over every table, docs/COST.md), and 0 turns it off. A
text served again under another routing overwrites that model's entry: the latest answer is the one
feedback joins to.

Item layout (in ``MonitorTable``, TTL ``ttl``, so feedback may come as late as the table keeps it):
``pk = served#<text hash>``, ``sk = answers``, and per model that answered the text ``m_<model>`` = JSON
``[window, [[version, stage, label, confidence, answered 0/1, epoch], ...]]`` (the serving window, then the
answers as :meth:`~topicserve.feedback.model.ServedAnswer.to_list` writes them).

Migration: items of the earlier layout (one per text and model: ``sk = <model>``, ``w``, ``a``) are not
read; they expire by their TTL (14 days). Until then a label for a text served only before the change is
refused as not recorded, as one for an expired entry is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from topicserve.aws import AwsClient
from topicserve.dynamo import RetryPolicy, raise_first, set_attributes
from topicserve.feedback.model import Served, ServedAnswer
from topicserve.rollout.routing import PRODUCTION, SHADOW, share
from topicserve.rollout.tally import Observation

MAX_REMEMBERED = 50_000  # entries an environment remembers as written (a repeat of one writes nothing)
LedgerKey = tuple[str, str]  # model, text hash
PREFIX = "served#"  # the partition key of a text's item: PREFIX + its hash
SORT_KEY = "answers"  # the one item per text
ENTRY = "m_"  # a model's entry: attribute ENTRY + model


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


def ledger_key(h: str) -> dict[str, Any]:
    """The key of text ``h``'s item."""
    return {"pk": {"S": f"{PREFIX}{h}"}, "sk": {"S": SORT_KEY}}


def ledger_attributes(entries: Iterable[Served]) -> dict[str, dict[str, str]]:
    """Each model's entry as the attribute of its own (``m_<model>``) that a write sets. Pure."""
    return {
        f"{ENTRY}{s.model}": {
            "S": json.dumps([s.window, [a.to_list() for a in s.answers]], separators=(",", ":"))
        }
        for s in entries
    }


def ledger_item(h: str, entries: Iterable[Served], ttl: int) -> dict[str, Any]:
    """The whole item of text ``h`` with ``entries`` (what the writes leave; a test puts it directly)."""
    return {**ledger_key(h), **ledger_attributes(entries), "ttl": {"N": str(ttl)}}


def text_of_item(item: Mapping[str, Any]) -> str:
    """The text hash of a ledger item."""
    return str(item["pk"]["S"]).removeprefix(PREFIX)


def served_from_item(item: Mapping[str, Any]) -> list[Served]:
    """Every model's entry of a ledger item (the models that answered the text)."""
    out = []
    for attribute, value in item.items():
        if attribute.startswith(ENTRY):
            window, rows = json.loads(value["S"])
            answers = tuple(ServedAnswer.from_list(row) for row in rows)
            out.append(Served(attribute.removeprefix(ENTRY), str(window), answers))
    return out


def by_text(entries: Mapping[LedgerKey, Served]) -> dict[str, dict[LedgerKey, Served]]:
    """The entries grouped by text, in the order they come: one write each. Pure."""
    out: dict[str, dict[LedgerKey, Served]] = {}
    for key, served in entries.items():
        out.setdefault(key[1], {})[key] = served
    return out


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
        """Write what is pending, one UpdateItem per text (several in flight); returns the writes. Raises
        when one failed: what it did not write stays pending for the next flush, what it wrote is done."""
        if not self.pending:
            return 0
        ttl = {"ttl": {"N": str(int(time.time()) + self.ttl_seconds)}}
        texts = by_text(self.pending)
        updates = [(ledger_key(h), ledger_attributes(e.values()) | ttl) for h, e in texts.items()]
        failures = set_attributes(self.ddb, self.table, updates, retry=RetryPolicy())
        for entries, failure in zip(texts.values(), failures, strict=True):
            if failure is None:
                self._written(entries)
        raise_first(failures)
        return len(updates)

    def _written(self, entries: Mapping[LedgerKey, Served]) -> None:
        for key, served in entries.items():
            self.pending.pop(key, None)
            if len(self.written) >= MAX_REMEMBERED:
                self.written.clear()
            self.written[key] = served.answers
