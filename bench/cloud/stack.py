"""The deployed bench stack (its stack.json), the clients the benchmarks use, and its switches."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bench.common import BENCH_CLIENT
from infra.localstack.localcloud.clients import client
from topicserve.dynamo import pages
from topicserve.results import expand_items
from topicserve_ops.client import Client
from topicserve_ops.lambda_config import update_environment

#: the model every cloud benchmark serves
MODEL = "logreg"


@dataclass
class Stack:
    """A deployed bench stack (its stack.json) and the clients the benchmarks use."""

    info: dict[str, Any]
    encode_batch_size: int | None = None

    def __post_init__(self) -> None:
        self.lam = client("lambda", **BENCH_CLIENT)
        self.sqs = client("sqs", **BENCH_CLIENT)
        self.ddb = client("dynamodb", **BENCH_CLIENT)
        self.s3 = client("s3", **BENCH_CLIENT)
        self.http = Client(self.info, timeout=60)
        self.predict_fn = self.info["functions"]["predict"][MODEL]
        self.image_fn: str | None = self.info.get("image_function")  # the same code as a container image
        self.batcher = self.info["functions"]["batcher"]
        self.api = self.info["functions"]["api"]  # POST/GET /v1/batches: the SQS path's front door
        self.warmer = self.info["functions"]["warmer"]
        mappings = self.lam.list_event_source_mappings(FunctionName=self.batcher)["EventSourceMappings"]
        self.mapping = mappings[0]["UUID"]

    # -- configuration switches ------------------------------------------------------------------------
    def set_batching(self, batch_size: int, window_s: int) -> None:
        self.lam.update_event_source_mapping(
            UUID=self.mapping, BatchSize=batch_size, MaximumBatchingWindowInSeconds=window_s
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = self.lam.get_event_source_mapping(UUID=self.mapping)["State"]
            if state == "Enabled":
                return
            time.sleep(0.3)

    def configure_batcher(self, variant: dict[str, Any]) -> None:
        update_environment(
            self.lam,
            self.batcher,
            {
                "DEDUP": "true" if variant["dedup"] else "false",
                "DISABLE_CACHES": variant["disable_caches"],
                "ADAPTIVE_BATCHING": "true" if variant.get("adaptive") else "false",
                "LATENCY_SLO_MS": str(variant.get("slo_ms", 5000)),
                # the encoder's best batch size measured in this run (None: the function's default)
                "ENCODE_BATCH_SIZE": str(self.encode_batch_size) if self.encode_batch_size else None,
            },
        )
        self.set_batching(variant["batch_size"], variant["window_s"])

    def configure_predict(self, disable_caches: str) -> None:
        for fn in filter(None, (self.predict_fn, self.image_fn)):  # one text/request
            update_environment(self.lam, fn, {"DISABLE_CACHES": disable_caches})

    # -- the requests queue and the results table ------------------------------------------------------
    def drain_queue(self, timeout_s: float = 60) -> None:
        """Purge what is left and wait until nothing is in flight, so the next point starts clean."""
        url = self.info["queue_url"]
        self.sqs.purge_queue(QueueUrl=url)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            if (
                int(attrs["ApproximateNumberOfMessages"])
                + int(attrs["ApproximateNumberOfMessagesNotVisible"])
                == 0
            ):
                return
            time.sleep(0.5)

    def collect(self, batch_id: str, expected: int, deadline: float) -> list[dict[str, Any]]:
        """Poll the results table for ``batch_id`` until ``expected`` rows or the deadline."""
        rows: list[dict[str, Any]] = []
        while True:
            rows = self._query(batch_id)
            if len(rows) >= expected or time.monotonic() > deadline:
                return rows
            time.sleep(1.0)

    def _query(self, batch_id: str) -> list[dict[str, Any]]:
        """Every result of the batch (chunk items expanded), with the time its item was written."""
        query = pages(
            self.ddb.query,
            TableName=self.info["tables"]["results"],
            KeyConditionExpression="batch_id = :b",
            ExpressionAttributeValues={":b": {"S": batch_id}},
        )
        return expand_items([i for page in query for i in page.get("Items", []) if "completed_ms" in i])
