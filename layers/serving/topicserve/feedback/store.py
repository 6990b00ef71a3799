"""Label feedback in DynamoDB: join each item to what was served, count it once, add it to the sums.

One call of ``POST /v1/feedback`` (up to 1,000 items):

1. join: feedback by text reads the served-answers ledger (one BatchGetItem key per distinct text: its
   one item holds every model's entry; 100 keys a call); feedback by batch request reads that batch's
   result items once (a Query per batch);
2. claim: one conditional put per joined item (``pk = fb#<key>#<answering versions>``,
   ``attribute_not_exists``): an item whose marker exists was counted before and is reported as a
   duplicate, so a retried call counts nothing twice (:func:`claim_key`);
3. add: the call's sums with atomic ``ADD``, one update per (window, model, version) of live quality (and
   one per (model, version) for all windows together) and one per candidate rollout record.

Write cost: one marker (~100 B, one write unit) per new feedback item, plus a few counter updates per
call (not per item): ~1 write unit per labelled answer, against the ~1.1 of one item per feedback.
The marker is written before the sums, so a call that dies between the two loses its items' counts rather
than counting them twice on a retry (at most once: a statistic may miss a label, never double one).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import ClientError

from topicserve.aws import AwsClient
from topicserve.dynamo import RetryPolicy, add_numbers, batch_get, partition
from topicserve.errors import RegistryError
from topicserve.feedback.ledger import ledger_key, served_from_item, text_of_item
from topicserve.feedback.model import (
    FeedbackItem,
    FeedbackSums,
    Joined,
    ParsedFeedback,
    QualitySums,
    Served,
    UnknownFeedbackIdError,
    aggregate,
    served_from_result,
)
from topicserve.feedback.quality import quality_report, references_from_metrics
from topicserve.requests import NothingValidError, Rejected
from topicserve.results import META, expand_items
from topicserve.rollout.records import RolloutStore
from topicserve.windows import window_start

logger = logging.getLogger(__name__)

ALL_WINDOWS = "all"
CLAIMS_IN_FLIGHT = 8
MAX_ADDS = 100  # counters one quality update adds (its expression stays well under DynamoDB's 4 KB)


class FeedbackStore:
    def __init__(
        self,
        monitor_table: str,
        results_table: str,
        client: AwsClient,
        *,
        rollout: RolloutStore | None = None,
        ttl_seconds: int = 14 * 24 * 3600,
    ) -> None:
        self.table = monitor_table
        self.results_table = results_table
        self.ddb = client
        self.rollout = rollout
        self.ttl_seconds = ttl_seconds

    # -- join ------------------------------------------------------------------------------------------
    def served_texts(self, hashes: Sequence[str], models: Sequence[str]) -> dict[str, list[Served]]:
        """text hash -> what each model served for it (models that never answered it are absent)."""
        keys = [ledger_key(h) for h in dict.fromkeys(hashes)]
        found: dict[str, list[Served]] = {}
        for item in batch_get(self.ddb, self.table, keys, retry=RetryPolicy()):
            by_model = {s.model: s for s in served_from_item(item)}
            served = [by_model[m] for m in dict.fromkeys(models) if m in by_model]
            if served:
                found[text_of_item(item)] = served
        return found

    def batch_results(self, batch_id: str, window_seconds: int) -> tuple[str, dict[str, dict[str, Any]]]:
        """A batch's serving window (from its creation time; now for a batch without one) and its results."""
        items = partition(self.ddb, self.results_table, "batch_id", {"S": batch_id})
        meta = next((i for i in items if i["request_id"]["S"] == META), None)
        created = _timestamp(meta["created_at"]["S"]) if meta and "created_at" in meta else time.time()
        results = {r["request_id"]: r["result"] for r in expand_items(items)}
        return window_start(created, window_seconds), results

    # -- count once ---------------------------------------------------------------------------------------
    def claim(self, key: str) -> bool:
        """Put the item's marker; False when it was there already (the feedback was counted before)."""
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item={"pk": {"S": f"fb#{key}"}, "sk": {"S": "-"}, "ttl": {"N": str(self._ttl())}},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # -- sums --------------------------------------------------------------------------------------------
    def add(self, sums: FeedbackSums) -> int:
        """Add one call's sums; returns the number of updates written."""
        written = 0
        totals: dict[tuple[str, str], QualitySums] = {}
        for (window, model, version), q in sums.quality.items():
            self._add_quality(window, model, version, q)
            totals.setdefault((model, version), QualitySums()).add_sums(q)
            written += 1
        for (model, version), q in totals.items():
            self._add_quality(ALL_WINDOWS, model, version, q)
            written += 1
        if self.rollout is not None:
            for key, tally in sums.gate.items():
                self.rollout.add(key, tally)
                written += 1
        return written

    def _add_quality(self, window: str, model: str, version: str, q: QualitySums) -> None:
        """The sums' ``ADD``s, at most :data:`MAX_ADDS` counters per update: a call of 1,000 labels for a
        poor version can hold ~400 confused class pairs, an expression over DynamoDB's 4 KB limit in one
        update. The first part carries ``n``, ``correct`` and the confidence bins (to_values' order)."""
        key = {"pk": {"S": f"quality#{window}"}, "sk": {"S": f"{model}#{version}"}}
        sets = {
            "model": {"S": model},
            "version": {"S": version},
            "stage": {"S": q.stage},
            "ttl": {"N": str(self._ttl())},
        }
        values = list(q.to_values().items())
        for start in range(0, len(values), MAX_ADDS):
            add_numbers(self.ddb, self.table, key, dict(values[start : start + MAX_ADDS]), sets)

    def quality(self, window: str = ALL_WINDOWS) -> dict[tuple[str, str], QualitySums]:
        """(model, version) -> its quality sums in one window (or over all windows)."""
        return {
            (i["model"]["S"], i["version"]["S"]): QualitySums.from_item(i)
            for i in partition(self.ddb, self.table, "pk", {"S": f"quality#{window}"})
        }

    def report(
        self, registry: RegistryLike, models: Sequence[str], window: str = ALL_WINDOWS
    ) -> dict[str, Any]:
        """Live quality per model and version in one window (or all), against each version's offline
        accuracy (the registry's ``metrics``): :func:`topicserve.feedback.quality.quality_report`."""
        sums = {k: v for k, v in self.quality(window).items() if k[0] in models}
        metrics: dict[tuple[str, str], Mapping[str, Any]] = {}
        for model, version in sums:
            try:
                metrics[(model, version)] = registry.show(model, int(version)).metrics
            except (RegistryError, ValueError):
                continue  # a version the registry no longer knows: no reference
        production = {
            m: str(r.production)
            for m, r in registry.routings(list(models)).items()
            if r.production is not None
        }
        return quality_report(sums, references_from_metrics(metrics), production)

    def _ttl(self) -> int:
        return int(time.time()) + self.ttl_seconds


class _Versioned(Protocol):
    @property
    def metrics(self) -> Mapping[str, Any]: ...


class _Routed(Protocol):
    @property
    def production(self) -> int | None: ...


class RegistryLike(Protocol):
    """The part of the registry the quality report reads."""

    def show(self, name: str, version: int) -> _Versioned: ...

    def routings(self, names: Sequence[str]) -> Mapping[str, _Routed]: ...


class LabelArchive:
    """The labelled texts of each call, for retraining (``python -m training.candidate --with-feedback``):
    one gzipped JSONL object per call (``feedback/labels/<date>/<time ns>-<id>.jsonl.gz``, a
    ``{"text", "label"}`` per line, only the items counted now), so it costs one S3 PUT per call, not a
    write per item. Batch feedback carries no text and is not archived."""

    PREFIX = "feedback/labels"

    def __init__(self, bucket: str, client: AwsClient) -> None:
        self.bucket = bucket
        self.s3 = client

    def put(self, items: Sequence[FeedbackItem]) -> str | None:
        lines = [json.dumps({"text": i.text, "label": i.label}) for i in items if i.text is not None]
        if not lines:
            return None
        # time-ordered keys: reading them back in key order lets the latest label of a text win
        now = time.time_ns()
        day = dt.datetime.fromtimestamp(now / 1e9, dt.UTC)
        key = f"{self.PREFIX}/{day:%Y-%m-%d}/{now:020d}-{uuid.uuid4().hex[:8]}.jsonl.gz"
        body = gzip.compress(("\n".join(lines) + "\n").encode("utf-8"))
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson")
        return key

    def labelled(self) -> dict[str, str]:
        """Every archived text -> its label (the latest label wins where a text was labelled twice)."""
        out: dict[str, str] = {}
        paginator = self.s3.get_paginator("list_objects_v2")
        keys = sorted(
            o["Key"]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.PREFIX + "/")
            for o in page.get("Contents", [])
        )
        for key in keys:
            body = gzip.decompress(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
            for line in body.decode("utf-8").splitlines():
                if line:
                    row = json.loads(line)
                    out[row["text"]] = row["label"]
        return out


@dataclass
class FeedbackOutcome:
    joined: list[Joined] = field(default_factory=list)  # counted now
    duplicates: list[FeedbackItem] = field(default_factory=list)  # counted before (or twice in this call)
    rejected: list[Rejected] = field(default_factory=list)
    in_call_duplicates: int = 0
    writes: int = 0

    def to_dict(self) -> dict[str, Any]:
        by_item: dict[int, dict[str, Any]] = {}
        for j in self.joined:
            answer = j.served.answering
            entry = by_item.setdefault(j.item.index, {"index": j.item.index, "ref": j.item.ref, "models": {}})
            if answer is not None:
                entry["models"][j.served.model] = {
                    "model_version": answer.version,
                    "stage": answer.stage,
                    "predicted": answer.label,
                    "confidence": answer.confidence,
                    "correct": answer.label == j.item.label,
                    "window": j.served.window,
                }
        return {
            "accepted": len(by_item),
            "duplicates": len(self.duplicates) + self.in_call_duplicates,
            "rejected": [r.to_dict() for r in self.rejected],
            "joined": [by_item[i] for i in sorted(by_item)],
        }


def submit_feedback(
    parsed: ParsedFeedback,
    store: FeedbackStore,
    models: Sequence[str],
    *,
    window_seconds: int,
) -> FeedbackOutcome:
    """Join, claim and add one call's items. Raises :class:`NothingValidError` (HTTP 400, every rejection
    listed) when no item could be joined and none was a duplicate: a call of only bad items is a 4xx."""
    outcome = FeedbackOutcome(rejected=list(parsed.rejected), in_call_duplicates=parsed.duplicates)
    by_text = store.served_texts([i.text_hash for i in parsed.items if i.text_hash], models)
    batches: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {}
    found: list[tuple[FeedbackItem, list[Served]]] = []
    for item in parsed.items:
        served = _join(item, by_text, batches, store, models, window_seconds)
        if served:
            found.append((item, served))
        else:
            outcome.rejected.append(Rejected(item.index, item.request_id or f"~{item.index}", _unknown(item)))
    # one conditional put per item, a few in flight: 1,000 round trips one after the other would be
    # seconds of a 29-second API call (botocore clients are thread-safe)
    with ThreadPoolExecutor(CLAIMS_IN_FLIGHT, thread_name_prefix="feedback-claim") as pool:
        claimed = list(pool.map(lambda pair: store.claim(claim_key(*pair)), found))
    for (item, served), new in zip(found, claimed, strict=True):
        if new:
            outcome.joined += [Joined(item, s) for s in served]
        else:
            outcome.duplicates.append(item)
    if not outcome.joined and not outcome.duplicates and not outcome.in_call_duplicates:
        raise NothingValidError(sorted(outcome.rejected, key=lambda r: r.index))
    outcome.rejected.sort(key=lambda r: r.index)
    outcome.writes = store.add(aggregate(outcome.joined))
    return outcome


def claim_key(item: FeedbackItem, served: Sequence[Served]) -> str:
    """What makes one labelled answer: the item's text or request, and which versions answered it. The
    same label for the same answers counts once; the same text answered later by another version (after a
    rollout step) is another answer, and its label counts for that version."""
    answered = sorted(f"{s.model}:{a.version}:{a.stage}" for s in served if (a := s.answering) is not None)
    digest = hashlib.sha256("|".join(answered).encode()).hexdigest()[:16]
    return f"{item.key}#{digest}"


def _join(
    item: FeedbackItem,
    by_text: dict[str, list[Served]],
    batches: dict[str, tuple[str, dict[str, dict[str, Any]]]],
    store: FeedbackStore,
    models: Sequence[str],
    window_seconds: int,
) -> list[Served]:
    if item.text_hash is not None:
        return by_text.get(item.text_hash, [])
    assert item.batch_id is not None and item.request_id is not None
    if item.batch_id not in batches:
        batches[item.batch_id] = store.batch_results(item.batch_id, window_seconds)
    window, results = batches[item.batch_id]
    result = results.get(item.request_id)
    if result is None:
        return []
    return [s for m in models if (s := served_from_result(m, window, result)) is not None]


def _unknown(item: FeedbackItem) -> UnknownFeedbackIdError:
    if item.text_hash is not None:
        return UnknownFeedbackIdError(
            f"items[{item.index}]: no served answer recorded for this text (never served, not in the "
            "ledger's sample, or expired)"
        )
    return UnknownFeedbackIdError(
        f"items[{item.index}]: no answered request {item.request_id!r} in batch {item.batch_id!r}"
    )


def _timestamp(iso: str) -> float:
    try:
        return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


# -- through the queue --------------------------------------------------------------------------------------
FEEDBACK_KEY = "feedback"


def feedback_body(body: str) -> dict[str, Any] | None:
    """The ``feedback`` object of a queued feedback message (``{"feedback": {"items": [...]}}``, the body
    of ``POST /v1/feedback`` wrapped), None for any other message (prediction requests are left alone)."""
    if FEEDBACK_KEY not in body:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    inner = data.get(FEEDBACK_KEY) if isinstance(data, dict) and set(data) == {FEEDBACK_KEY} else None
    return inner if isinstance(inner, dict) else None


@dataclass
class QueuedFeedback:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    refused_messages: int = 0  # nothing in them can ever be counted: dropped with a log line
    retry: list[str] = field(default_factory=list)  # message ids to receive again (a backend failed)


def process_feedback_records(
    records: Sequence[tuple[str, dict[str, Any]]],
    store: FeedbackStore,
    models: Sequence[str],
    *,
    window_seconds: int,
    max_chars: int,
    archive: LabelArchive | None = None,
) -> QueuedFeedback:
    """Feedback that came through the queue, ``(message id, feedback object)`` each: the same parsing,
    join and counting as ``POST /v1/feedback``. A message whose items are all invalid or unknown is
    dropped (a retry cannot fix it: the caller's mistake, logged), one that meets a backend failure is
    retried (its items were claimed or not: a retry counts none twice)."""
    from topicserve.errors import InvalidInputError
    from topicserve.feedback.model import parse_feedback_data

    done = QueuedFeedback()
    for message_id, data in records:
        try:
            outcome = submit_feedback(
                parse_feedback_data(data, max_chars=max_chars), store, models, window_seconds=window_seconds
            )
        except InvalidInputError as exc:
            done.refused_messages += 1
            logger.warning("feedback message refused", extra={"message_id": message_id, "error": str(exc)})
            continue
        except Exception as exc:
            done.retry.append(message_id)
            logger.warning(
                "feedback message failed; retried", extra={"message_id": message_id, "error": repr(exc)}
            )
            continue
        answer = outcome.to_dict()
        done.accepted += answer["accepted"]
        done.duplicates += answer["duplicates"]
        done.rejected += len(answer["rejected"])
        if archive is not None:
            try:
                archive.put(list({j.item.index: j.item for j in outcome.joined}.values()))
            except Exception as exc:
                logger.warning("feedback archive write failed", extra={"error": repr(exc)})
    return done
