"""Rollout records in DynamoDB: one item per (model, stage, version, epoch), sums added atomically.

Table layout (partition key ``model`` S, sort key ``record`` S = ``<stage>#<version>#<epoch>``): the
:class:`~topicserve.rollout.tally.Tally` fields as numbers, ``first_at`` / ``updated_at``. Every
environment adds its own sums with ``ADD`` (no read-modify-write, no lost update), at most every
``flush_seconds``: a record costs one small write per environment per flush, not one per request. The
epoch is the registry revision at which the candidate entered its stage, so a version that re-enters a
stage starts from zero.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import Any

from topicserve.aws import AwsClient
from topicserve.dynamo import add_numbers, partition
from topicserve.rollout.tally import Observation, Tally
from topicserve.windows import FlushTimer

logger = logging.getLogger(__name__)

RecordKey = tuple[str, str, str, int]  # model, stage, version, epoch
_FIELDS = [f.name for f in fields(Tally)]


def record_id(stage: str, version: str | int, epoch: int) -> str:
    return f"{stage}#{version}#{epoch}"


class RolloutStore:
    def __init__(self, table: str, client: AwsClient) -> None:
        self.table = table
        self.ddb = client

    def add(self, key: RecordKey, tally: Tally) -> None:
        model, stage, version, epoch = key
        now = {"S": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        add_numbers(
            self.ddb,
            self.table,
            {"model": {"S": model}, "record": {"S": record_id(stage, version, epoch)}},
            {name: getattr(tally, name) for name in _FIELDS},
            {
                "stage": {"S": stage},
                "version": {"N": str(version)},
                "epoch": {"N": str(epoch)},
                "updated_at": now,
            },
            number=_number,
            if_absent={"first_at": now},
        )

    def get(self, model: str, stage: str, version: str | int, epoch: int) -> Tally:
        item = self.ddb.get_item(
            TableName=self.table,
            Key={"model": {"S": model}, "record": {"S": record_id(stage, version, epoch)}},
            ConsistentRead=True,
        ).get("Item")
        return _tally(item) if item else Tally()

    def records(self, model: str) -> list[dict[str, Any]]:
        """Every record of a model (all stages, versions and epochs), oldest first."""
        out = [
            {
                "stage": i["stage"]["S"],
                "version": int(i["version"]["N"]),
                "epoch": int(i["epoch"]["N"]),
                "first_at": i.get("first_at", {}).get("S"),
                "updated_at": i.get("updated_at", {}).get("S"),
                **_tally(i).summary(),
            }
            for i in partition(self.ddb, self.table, "model", {"S": model})
        ]
        return sorted(out, key=lambda r: (r["first_at"] or "", r["epoch"]))


class RolloutRecorder:
    """Sums what the candidates did in this environment and writes it every ``flush_seconds``.

    A failed write keeps the sums for the next flush (and is logged): a registry or table outage never
    fails a request, it only delays the gate.
    """

    def __init__(
        self,
        store: RolloutStore | None,
        *,
        flush_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.pending: dict[RecordKey, Tally] = {}
        self.timer = FlushTimer(flush_seconds, clock)

    def observe(self, observations: Iterable[Observation]) -> None:
        for o in observations:
            self.pending.setdefault((o.model, o.stage, o.version, o.epoch), Tally()).add(o.tally)

    def load_error(self, model: str, stage: str, version: int, epoch: int) -> None:
        self.pending.setdefault((model, stage, str(version), epoch), Tally()).errors += 1

    def maybe_flush(self, *, force: bool = False) -> int:
        """Write the sums when due; returns how many records were written."""
        if not self.pending or self.store is None or not self.timer.due(force=force):
            return 0
        written = 0
        for key, tally in list(self.pending.items()):
            try:
                self.store.add(key, tally)
            except Exception as exc:
                logger.warning(
                    "rollout record write failed; kept for the next flush", extra={"error": repr(exc)}
                )
                break
            del self.pending[key]
            written += 1
        return written


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6f}"


def _tally(item: dict[str, Any]) -> Tally:
    values: dict[str, Any] = {}
    for f in fields(Tally):
        raw = item.get(f.name, {}).get("N", "0")
        values[f.name] = int(raw) if f.type in ("int", int) else float(raw)
    return Tally(**values)
