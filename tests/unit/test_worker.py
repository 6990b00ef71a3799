"""The bulk worker against an in-process SQS (moto): merged receives, the batcher's per-message rules,
deletes only of what was answered, visibility heartbeats, stopping after the batch in hand."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.unit.conftest import FakeEncoder, FakeHead
from topicserve.batcher import ResultRow
from topicserve.cache.store import LRUStore
from topicserve.requests import QueuedRequest
from topicserve.service import InferenceService
from topicserve.settings import Settings
from topicserve_worker.accelerator import CPU, CUDA, EncoderChoice
from topicserve_worker.worker import (
    GPU_ENCODE_BATCH_SIZE,
    Heartbeat,
    Worker,
    WorkerSettings,
    report_encoder,
    with_encoder,
)


@pytest.fixture
def sqs(aws: None) -> Any:
    return boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def queue(sqs: Any) -> str:
    url: str = sqs.create_queue(QueueName="bulk", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    return url


def send(sqs: Any, queue: str, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])],
        )


def requests(n: int, batch: str = "b1") -> list[str]:
    return [QueuedRequest(batch, f"r{i}", f"text number {i % 40}", ["logreg"]).to_message() for i in range(n)]


def make_worker(sqs: Any, queue: str, written: list[ResultRow], **config: Any) -> Worker:
    service = InferenceService(FakeEncoder(), {"logreg": FakeHead("logreg")})
    settings = Settings(models=("logreg",), bulk_queue_url=queue)
    return Worker(sqs, WorkerSettings(wait_seconds=0, **config), service, written.extend, settings)


def visible(sqs: Any, queue: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_receives_are_merged_and_every_answered_message_is_deleted(sqs: Any, queue: str) -> None:
    send(sqs, queue, requests(45))
    written: list[ResultRow] = []
    worker = make_worker(sqs, queue, written, target_messages=30)
    first = worker.gather()
    assert len(first) == 30  # three receives of 10 merged into one pass
    worker.serve(first)
    worker.run(once=True)
    assert sorted(r for _, r, _ in written) == sorted(f"r{i}" for i in range(45))
    assert all(result["status"] == "ok" for _, _, result in written)
    assert worker.answered == 45 and visible(sqs, queue) == 0


def test_malformed_messages_are_left_for_sqs_to_redeliver(sqs: Any, queue: str) -> None:
    send(sqs, queue, [*requests(5), "not json at all"])
    written: list[ResultRow] = []
    worker = make_worker(sqs, queue, written, retry_delay_seconds=1)
    worker.serve(worker.gather())
    assert len(written) == 5 and worker.retried == 1
    time.sleep(1.2)  # its retry delay: SQS delivers it again (to the DLQ after maxReceiveCount)
    again = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in again] == ["not json at all"]


class Beats:
    """A heartbeat's ``wait`` that lets ``n`` beats happen, then stops the heartbeat and says so: the test
    counts beats without a clock."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.done = threading.Event()

    def __call__(self, seconds: float) -> bool:
        if self.left == 0:
            self.done.set()
            return True
        self.left -= 1
        return False


def test_heartbeat_extends_the_visibility_of_a_long_batch(sqs: Any, queue: str) -> None:
    send(sqs, queue, requests(3))
    # visibility 0: the messages are visible again at once, unless a beat extends them
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    beats = Beats(1)
    with Heartbeat(
        sqs, queue, [m["ReceiptHandle"] for m in messages], every=0.3, extend=30, wait=beats
    ) as beat:
        assert beats.done.wait(timeout=30)
    assert beat.beats == 1
    assert sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []) == []


def test_a_failed_visibility_extension_is_logged_and_the_heartbeat_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The batch in hand is not given up when SQS refuses an extension: at worst a message is delivered
    twice, and the next beat extends every receipt again, in chunks of 10."""

    class Refusing:
        def __init__(self) -> None:
            self.calls: list[list[str]] = []

        def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> None:
            self.calls.append([e["ReceiptHandle"] for e in Entries])
            assert all(e["VisibilityTimeout"] == 30 for e in Entries)
            if len(self.calls) == 1:
                raise RuntimeError("SQS is down")

    receipts = [f"r{i}" for i in range(25)]
    sqs, beats = Refusing(), Beats(2)
    heartbeat = Heartbeat(sqs, "q", receipts, every=1, extend=30, wait=beats)
    with caplog.at_level("WARNING", logger="topicserve.worker"), heartbeat as beat:
        assert beats.done.wait(timeout=30)
    assert beat.beats == 2
    assert [len(c) for c in sqs.calls] == [10, 10, 5] * 2  # the failed chunk did not stop its beat
    assert [r for c in sqs.calls[3:] for r in c] == receipts
    assert [r.getMessage() for r in caplog.records] == ["visibility extension failed"]


def test_stop_finishes_the_batch_in_hand_and_receives_nothing_more(sqs: Any, queue: str) -> None:
    send(sqs, queue, requests(20))
    written: list[ResultRow] = []
    worker = make_worker(sqs, queue, written, target_messages=10)

    def slow_write(rows: list[ResultRow]) -> None:
        worker.stop()  # SIGTERM arrives while the batch is being answered
        written.extend(rows)

    worker.write = slow_write
    thread = threading.Thread(target=worker.run)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(written) == 10 and worker.answered == 10
    assert visible(sqs, queue) == 10  # the rest stays queued for the next task


# --- the encoder the worker runs (topicserve_worker.accelerator), its settings, its log line and metric ---


def test_encoder_settings_from_env() -> None:
    default = WorkerSettings.from_env({})
    assert (default.encoder_mode, default.encoder_dir, default.encode_batch_size) == ("auto", "", 0)
    config = WorkerSettings.from_env(
        {
            "WORKER_ENCODER": "CPU",
            "WORKER_ENCODER_DIR": " /models/encoder ",
            "WORKER_ENCODE_BATCH_SIZE": "512",
        }
    )
    assert (config.encoder_mode, config.encoder_dir, config.encode_batch_size) == (
        "cpu",
        "/models/encoder",
        512,
    )
    with pytest.raises(ValueError, match="WORKER_ENCODER must be one of auto, cuda, cpu, got 'gpu'"):
        WorkerSettings.from_env({"WORKER_ENCODER": "gpu"})
    with pytest.raises(ValueError, match="WORKER_ENCODE_BATCH_SIZE must be an integer"):
        WorkerSettings.from_env({"WORKER_ENCODE_BATCH_SIZE": "many"})
    with pytest.raises(ValueError, match="encode_batch_size must be >= 0"):
        WorkerSettings(encode_batch_size=-1)


def choice(provider: str = CPU, precision: str = "int8") -> EncoderChoice:
    return EncoderChoice(provider, precision, f"/enc/model.{precision}.onnx", "auto", "test", (provider, CPU))


def test_encode_batch_size_follows_the_device() -> None:
    settings = Settings(models=("logreg",), encode_batch_size=32)
    assert WorkerSettings().batch_size_for(choice(CUDA, "fp16"), settings) == GPU_ENCODE_BATCH_SIZE
    assert WorkerSettings().batch_size_for(choice(), settings) == 32
    assert WorkerSettings(encode_batch_size=1024).batch_size_for(choice(), settings) == 1024


def test_with_encoder_rebinds_the_caches_to_the_new_encoder_version() -> None:
    """Embeddings of the fp16 encoder must never be served as the INT8 encoder's (nor the reverse)."""
    store = LRUStore(100)
    old = InferenceService(FakeEncoder("int8-v"), {"logreg": FakeHead("logreg")}, cache_store=store)
    new = with_encoder(old, FakeEncoder("fp16-v"), 256)
    assert new is not old and new.encoder.version == "fp16-v" and new.encode_batch_size == 256
    assert new.routes is old.routes and new.encode_rows is old.encode_rows
    assert new.cache is not None and old.cache is not None and new.cache.store is store
    assert new.cache.config.encoder == "fp16-v" and new.cache.config.batch_size == 256
    assert new.cache.key("t") != old.cache.key("t")
    assert with_encoder(old, old.encoder, 1) is old  # the runtime's own encoder and batch size: kept
    rebatched = with_encoder(old, old.encoder, 64)  # another batch size: other embeddings, other keys
    assert rebatched is not old and rebatched.cache is not None
    assert rebatched.cache.key("t") != old.cache.key("t")


def test_with_encoder_keeps_a_test_stacks_stage_faults() -> None:
    """The GPU encoder swapped in keeps the encoder's chaos switches; the loaded one is found inside them."""
    from topicserve.faults import FaultyEncoder, InjectedFault, StageFaults, unwrapped

    loaded = FakeEncoder("int8-v")
    old = InferenceService(
        FaultyEncoder(loaded, StageFaults({"encode": "POISON"})), {"logreg": FakeHead("logreg")}
    )
    assert unwrapped(old.encoder) is loaded and unwrapped(loaded) is loaded
    assert with_encoder(old, loaded, 1) is old  # main() passes the unwrapped encoder it preloaded
    new = with_encoder(old, FakeEncoder("fp16-v"), 256)
    assert isinstance(new.encoder, FaultyEncoder) and new.encoder.version == "fp16-v"
    assert new.predict(["fine"], ["logreg"]).predictions["logreg"][0].label
    with pytest.raises(InjectedFault, match="encode"):
        new.predict(["POISON"], ["logreg"])


def emf(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and "_aws" in line]


@pytest.mark.parametrize(("provider", "precision", "on_gpu"), [(CPU, "int8", 0), (CUDA, "fp16", 1)])
def test_report_encoder_emits_the_provider_metric(
    provider: str,
    precision: str,
    on_gpu: int,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="topicserve.worker")
    report_encoder(choice(provider, precision), 256)
    (blob,) = emf(capsys.readouterr().out)
    assert blob["WorkerEncoderOnGpu"] == [on_gpu]
    assert blob["Provider"] == provider and blob["precision"] == precision
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    assert directive["Dimensions"] == [["Provider", "service"]]
    assert [m["Name"] for m in directive["Metrics"]] == ["WorkerEncoderOnGpu"]
    (record,) = [r for r in caplog.records if r.getMessage() == "encoder selected"]
    assert record.provider == provider and record.precision == precision  # type: ignore[attr-defined]
    assert record.levelname == ("INFO" if on_gpu else "WARNING")  # a GPU worker on its CPU is worth a look


def test_main_runs_the_selected_encoder_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """main() wiring without AWS: the runtime is a stand-in, the encoder selection is real (this machine:
    CPU fallback), the worker gets the selected encoder, and the start says which provider runs it."""
    import topicserve.bootstrap
    from tests.unit.test_encoder import make_encoder_graph, make_tokenizer
    from topicserve_worker import worker as worker_mod

    make_encoder_graph(tmp_path / "model.int8.onnx")
    make_tokenizer(tmp_path / "tokenizer.json")
    runtime_service = InferenceService(FakeEncoder(), {"logreg": FakeHead("logreg")})
    flushed: list[bool] = []

    class Runtime:
        service = runtime_service
        dynamodb = None
        init_seconds = 0.1

        def __init__(self, settings: Settings) -> None:  # what bootstrap.build_worker read
            self.settings = dataclasses.replace(settings, models=("logreg",), encoder_max_length=16)

        def flush(self, *, force: bool = False) -> None:
            flushed.append(force)

    ran: list[Worker] = []
    monkeypatch.setattr(topicserve.bootstrap, "build_runtime", lambda settings: Runtime(settings))
    monkeypatch.setattr(topicserve.bootstrap, "aws_client", lambda name, **kw: None)  # no AWS client needed
    monkeypatch.setattr(Worker, "install_signal_handlers", lambda self: None)  # pytest owns the signals
    monkeypatch.setattr(Worker, "run", lambda self, once=False: ran.append(self))
    for var, value in {
        "BULK_QUEUE_URL": "http://q",
        "WORKER_ENCODER_DIR": str(tmp_path),
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("WORKER_ENCODER", raising=False)
    assert worker_mod.main([]) == 0
    (worker,) = ran
    assert worker.queue_url == "http://q"  # BULK_QUEUE_URL
    assert worker.service is not runtime_service  # the toy INT8 file, not the runtime's fake encoder
    assert (
        worker.service.encoder.version
        == hashlib.sha256((tmp_path / "model.int8.onnx").read_bytes()).hexdigest()
    )
    assert worker.service.encode_batch_size == Settings().encode_batch_size  # CPU: the serving default
    assert flushed == [True]
    (blob,) = emf(capsys.readouterr().out)
    assert blob["Provider"] == CPU and blob["precision"] == "int8"


def test_help_lists_the_variables_it_reads(capsys: pytest.CaptureFixture[str]) -> None:
    """``topicserve-worker --help`` answers (the command takes no arguments) and names its variables."""
    from topicserve_worker import worker as worker_mod

    with pytest.raises(SystemExit) as exited:
        worker_mod.main(["--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith("usage: topicserve-worker") and "WORKER_ENCODER" in shown
    with pytest.raises(SystemExit) as refused:
        worker_mod.main(["--bogus"])
    assert refused.value.code == 2
