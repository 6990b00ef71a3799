"""The bulk worker (``topicserve-worker``, the GPU image's entrypoint): drains a bulk SQS queue in large
merged batches, with the batcher's rules per message.

Lambda hands the batcher at most one SQS batch per invocation; a long-running worker can do better on a
GPU: it merges many receives (10 messages each, SQS's maximum) into one pass of hundreds to about a
thousand texts, so the encoder runs at the batch sizes a GPU needs. Per message it is exactly the batcher
(:func:`topicserve.batcher.process_records`: dedup, caches, isolation, error results), so labels and
results match the Lambda path. Around that:

* while a batch is being served, a heartbeat thread keeps extending its messages' visibility, so a long
  batch is not delivered twice;
* only the messages that were answered (a result or an error result written) are deleted; the rest
  become visible again after ``retry_delay_seconds`` and SQS redelivers them (to the dead-letter queue
  after ``maxReceiveCount``);
* SIGTERM (a task being stopped, a scale-in) stops receiving, finishes and answers the batch in hand,
  then exits; killed outright, nothing was deleted that was not answered, and results are keyed by
  request id (or chunk), so a redelivered message overwrites its own result (answered once, as the batcher).

The encoder is chosen at start (:mod:`topicserve_worker.accelerator`): fp16 on CUDA where a GPU is usable,
else the CPU INT8 encoder, the Lambda path's. The worker logs which provider and precision run and emits it
as the metric ``WorkerEncoderOnGpu`` (1/0, dimension ``Provider``), so a GPU task that silently fell back to
its CPU is visible, not only slow. On a GPU the encoder gets larger sub-batches
(``WORKER_ENCODE_BATCH_SIZE``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from topicserve.batcher import BatchOutcome, Stored, process_records
from topicserve.protocols import EncoderLike
from topicserve.service import InferenceService
from topicserve.settings import FromEnv, Settings, declared, setting
from topicserve_worker.accelerator import MODES, EncoderChoice, Mode

if TYPE_CHECKING:  # the boto3 stubs: development environment only
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import (
        ChangeMessageVisibilityBatchRequestEntryTypeDef,
        DeleteMessageBatchRequestEntryTypeDef,
        MessageTypeDef,
    )

# not __name__ ("__main__" when run as ``python -m topicserve_worker.worker``, the GPU image's entrypoint, and
# outside "topicserve" either way): make_logger gives the "topicserve" logger tree its JSON format
logger = logging.getLogger("topicserve.worker")

SQS_MAX = 10  # messages per ReceiveMessage / DeleteMessageBatch / ChangeMessageVisibilityBatch call
#: encoder sub-batch on a GPU when WORKER_ENCODE_BATCH_SIZE is unset: a GPU needs hundreds of texts per
#: call to be busy, while on a CPU the serving default (ENCODE_BATCH_SIZE, 1: batch-invariant INT8) is
#: also the fastest (bench/results/gpu_check-*.json: 118 texts/s at 1, 92 at 64, 38 at 1024)
GPU_ENCODE_BATCH_SIZE = 256


@dataclass(frozen=True)
class WorkerSettings(FromEnv):
    """The worker's own settings; its queue is the bulk queue (BULK_QUEUE_URL, Settings.bulk_queue_url)."""

    target_messages: int = setting(512, env="WORKER_TARGET_MESSAGES", why="merge receives until this many")
    max_gather_seconds: float = setting(
        2.0, env="WORKER_MAX_GATHER_SECONDS", why="... or this long since the first message arrived"
    )
    wait_seconds: int = setting(5, env="WORKER_WAIT_SECONDS", why="long polling of an empty queue")
    visibility_seconds: int = setting(
        300, env="WORKER_VISIBILITY_SECONDS", why="what each heartbeat extends the batch's messages to"
    )
    heartbeat_seconds: float = setting(
        60.0, env="WORKER_HEARTBEAT_SECONDS", why="how often the visibility of the batch in hand is extended"
    )
    retry_delay_seconds: int = setting(
        5, env="WORKER_RETRY_DELAY_SECONDS", why="a message to retry is visible again after this, not 300 s"
    )
    encoder_mode: Mode = setting(
        "auto", env="WORKER_ENCODER", why="auto: the GPU if usable, else the CPU; cuda: the GPU or fail; cpu"
    )
    encoder_dir: str = setting(
        "", env="WORKER_ENCODER_DIR", why="where model.fp16.onnx / the INT8 encoder are; blank: ENCODER_DIR"
    )
    encode_batch_size: int = setting(
        0,
        env="WORKER_ENCODE_BATCH_SIZE",
        why=f"encoder sub-batch; 0: {GPU_ENCODE_BATCH_SIZE} on a GPU, else the service's (ENCODE_BATCH_SIZE)",
    )

    def __post_init__(self) -> None:
        if self.encoder_mode not in MODES:
            raise ValueError(f"encoder_mode must be one of {', '.join(MODES)}, got {self.encoder_mode!r}")
        if self.encode_batch_size < 0:
            raise ValueError(f"encode_batch_size must be >= 0, got {self.encode_batch_size}")

    def batch_size_for(self, choice: EncoderChoice, settings: Settings) -> int:
        """The encoder sub-batch for the encoder that runs (see WORKER_ENCODE_BATCH_SIZE)."""
        if self.encode_batch_size:
            return self.encode_batch_size
        return GPU_ENCODE_BATCH_SIZE if choice.on_gpu else settings.encode_batch_size


class Heartbeat:
    """Extends the visibility of the messages in hand every ``every`` seconds until stopped.

    ``wait(seconds)`` sleeps between beats and says whether to stop (default: the stop event's own
    ``wait``); tests pass one that returns when they say, so that they count beats without a clock.
    """

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        receipts: Sequence[str],
        *,
        every: float,
        extend: int,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.sqs, self.queue_url, self.receipts = sqs, queue_url, list(receipts)
        self.every, self.extend = every, extend
        self.beats = 0
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._thread = threading.Thread(target=self._run, name="visibility-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._wait(self.every):
            for start in range(0, len(self.receipts), SQS_MAX):
                entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
                    {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": self.extend}
                    for i, r in enumerate(self.receipts[start : start + SQS_MAX])
                ]
                try:
                    self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
                except Exception as exc:  # the batch goes on; at worst a message is delivered twice
                    logger.warning("visibility extension failed", extra={"error": repr(exc)})
            self.beats += 1


class Worker:
    def __init__(
        self,
        sqs: SQSClient,
        config: WorkerSettings,
        service: InferenceService,
        write: Callable[[list[Stored]], None],
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sqs, self.config, self.service, self.write, self.settings = sqs, config, service, write, settings
        self.queue_url = settings.bulk_queue_url
        self.clock = clock
        self.stopping = threading.Event()
        self.answered = 0
        self.retried = 0

    def gather(self) -> list[MessageTypeDef]:
        """Receive until ``target_messages`` or ``max_gather_seconds`` after the first message; empty
        when the queue stays empty for one long poll or a stop was asked."""
        messages: list[MessageTypeDef] = []
        first: float | None = None
        while len(messages) < self.config.target_messages and not self.stopping.is_set():
            if first is not None and self.clock() - first >= self.config.max_gather_seconds:
                break
            page = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(SQS_MAX, self.config.target_messages - len(messages)),
                WaitTimeSeconds=0 if messages else self.config.wait_seconds,
                VisibilityTimeout=self.config.visibility_seconds,
            ).get("Messages", [])
            if not page:
                if messages or first is None:
                    break
                continue
            first = first if first is not None else self.clock()
            messages.extend(page)
        return messages

    def serve(self, messages: list[MessageTypeDef]) -> BatchOutcome:
        """One merged pass; deletes exactly the messages it answered."""
        records = [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]
        receipts = {m["MessageId"]: m["ReceiptHandle"] for m in messages}
        with Heartbeat(
            self.sqs,
            self.queue_url,
            list(receipts.values()),
            every=self.config.heartbeat_seconds,
            extend=self.config.visibility_seconds,
        ):
            outcome = process_records(records, self.service, self.write, self.settings)
        retry = set(outcome.failed_message_ids)
        done = [(i, receipts[m]) for i, m in enumerate(receipts) if m not in retry]
        for start in range(0, len(done), SQS_MAX):
            entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
                {"Id": str(i), "ReceiptHandle": r} for i, r in done[start : start + SQS_MAX]
            ]
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        again = [(i, receipts[m]) for i, m in enumerate(receipts) if m in retry]
        for start in range(0, len(again), SQS_MAX):
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": self.config.retry_delay_seconds}
                    for i, r in again[start : start + SQS_MAX]
                ],
            )
        self.answered += len(done)
        self.retried += len(retry)
        logger.info(
            "bulk batch served",
            extra={
                "messages": len(messages),
                "answered": len(done),
                "results": outcome.results,  # requests answered (a chunk message carries several)
                "retried": len(retry),
                "passes": outcome.passes,
            },
        )
        return outcome

    def run(self, *, once: bool = False) -> None:
        """Until SIGTERM / :meth:`stop` (or, with ``once``, until the queue is empty)."""
        while not self.stopping.is_set():
            messages = self.gather()
            if messages:
                self.serve(messages)
            elif once:
                return

    def stop(self, *_: object) -> None:
        """Finish the batch in hand, receive nothing more (the SIGTERM handler)."""
        if not self.stopping.is_set():
            logger.info("stopping: the batch in hand is answered first")
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)


def with_encoder(service: InferenceService, encoder: EncoderLike, batch_size: int) -> InferenceService:
    """``service`` running ``encoder`` with sub-batches of ``batch_size``.

    A different encoder or batch size needs a new service, not a swapped attribute: cache records are keyed
    by the encoder configuration (the fp16 encoder's embeddings are not the INT8 one's, and a batch of 256
    gives other INT8 embeddings than a batch of 1), which the service binds when it is built. Routes, the
    cache store and its admission and the dedup strategy are kept, and a test stack's stage faults
    (:mod:`topicserve.faults`) wrap the new encoder as they wrapped the old.
    """
    from topicserve.faults import same_faults

    encoder = same_faults(service.encoder, encoder)
    if encoder is service.encoder and batch_size == service.encode_batch_size:
        return service
    cache = service.cache
    return InferenceService(
        encoder,
        service.routes,
        cache_store=cache.store if cache else None,
        doorkeeper=cache.doorkeeper if cache else None,
        read_gate=cache.read_gate if cache else None,
        use_answers=cache.use_answers if cache else True,
        top=service.top,
        encode_batch_size=batch_size,
        encode_rows=service.encode_rows,
    )


def report_encoder(choice: EncoderChoice, batch_size: int, kind: str = "worker") -> None:
    """Say which provider and precision run the encoder: a log line, and ``WorkerEncoderOnGpu`` (1 on
    CUDA, 0 on a CPU fallback) as an EMF metric with the dimension ``Provider``, in its own blob because
    its dimension differs from the service's metrics."""
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    from topicserve.observability import NAMESPACE, service_name

    log = logger.info if choice.on_gpu or choice.mode == "cpu" else logger.warning
    log("encoder selected", extra={**choice.as_dict(), "encode_batch_size": batch_size})
    blob = EphemeralMetrics(namespace=NAMESPACE, service=service_name(kind))
    blob.add_dimension(name="Provider", value=choice.provider)
    blob.add_metadata(key="precision", value=choice.precision)
    blob.add_metadata(key="path", value=choice.path)
    blob.add_metric(name="WorkerEncoderOnGpu", unit=MetricUnit.Count, value=int(choice.on_gpu))
    blob.flush_metrics()


def parser() -> argparse.ArgumentParser:
    """The command's help: it takes no arguments (a container's entrypoint is configured by its
    environment, as the batcher function is), so ``--help`` lists the variables it reads."""
    rows = [f"  {env}: {why}" for _, env, _, _, _, why in declared(WorkerSettings)]
    return argparse.ArgumentParser(
        prog="topicserve-worker",
        description="Drain the bulk queue until SIGTERM: the batcher's runtime (registry routing, caches, "
        "results) with the encoder the accelerator module picks (GPU where one is usable).",
        epilog="Configured by the environment (and every serving setting the batcher reads, "
        "docs/SETTINGS.md):\n" + "\n".join(rows),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``topicserve-worker``: the same runtime as the batcher (registry routing, caches, results), run as a
    long-lived process until SIGTERM, with the encoder :mod:`topicserve_worker.accelerator` picks."""
    parser().parse_args(argv)
    from topicserve.bootstrap import build_worker
    from topicserve.encoder import Encoder
    from topicserve.faults import unwrapped
    from topicserve.observability import make_logger
    from topicserve_worker.accelerator import select_encoder

    make_logger("worker")
    config = WorkerSettings.from_env()  # a malformed worker setting fails here, before anything loads
    built = build_worker()  # its runtime's encoder is the encoder layer's (ENCODER_DIR), on the CPU
    runtime, settings = built.runtime, built.runtime.settings
    loaded = unwrapped(runtime.service.encoder)  # the encoder layer's, inside a test stack's chaos switches
    selected = select_encoder(
        config.encoder_dir or settings.encoder_dir,
        config.encoder_mode,
        max_length=settings.encoder_max_length,
        intra_op_threads=settings.encoder_threads,
        preloaded=loaded if isinstance(loaded, Encoder) else None,
    )
    batch_size = config.batch_size_for(selected.choice, settings)
    service = with_encoder(runtime.service, selected.encoder, batch_size)
    report_encoder(selected.choice, batch_size)
    worker = Worker(built.sqs, config, service, built.results.write, settings)
    worker.install_signal_handlers()
    logger.info("worker started", extra={"init_seconds": round(runtime.init_seconds, 3)})
    worker.run()
    runtime.flush(force=True)
    logger.info("worker stopped", extra={"answered": worker.answered, "retried": worker.retried})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
