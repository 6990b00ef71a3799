"""The stage faults as wrappers: the encoder and the heads a test stack's bootstrap wraps, the same errors
for the same markers as the pipeline raised itself before, and nothing wrapped without the switches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.unit.conftest import BUCKET, TABLE, FakeEncoder, FakeHead, artifact
from tests.unit.test_isolation import Heads
from topicserve import bootstrap
from topicserve.batcher import shape_answer
from topicserve.errors import BackendUnavailableError
from topicserve.faults import FaultyEncoder, FaultyHead, InjectedFault, StageFaults, with_test_faults
from topicserve.registry import Registry
from topicserve.service import InferenceService
from topicserve.settings import Settings

MARKERS = "transient=OUTAGE,tokenize=BADTOK,encode=BADENC,head=BADHEAD"


def wrapped(markers: str) -> tuple[InferenceService, FakeEncoder, Heads]:
    encoder, heads = FakeEncoder(), Heads({"logreg": FakeHead("logreg"), "mlp": FakeHead("mlp", seed=1)})
    faulty = with_test_faults(Settings(test_switches=True, fault_markers=markers), encoder, heads)
    return InferenceService(faulty, heads), encoder, heads


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("an OUTAGE here", BackendUnavailableError, "injected transient fault (OUTAGE)"),
        ("BADTOK text", InjectedFault, "injected tokenize fault (BADTOK)"),
        ("BADENC text", InjectedFault, "injected encode fault (BADENC)"),
        ("BADHEAD text", InjectedFault, "injected head fault (BADHEAD)"),
    ],
)
def test_each_marker_fails_its_stage_with_the_error_it_always_raised(
    text: str, error: type[Exception], message: str
) -> None:
    service, _, _ = wrapped(MARKERS)
    with pytest.raises(error) as raised:
        service.predict(["fine", text, "fine again"], ["logreg", "mlp"])
    assert str(raised.value) == message
    assert service.predict(["fine", "fine again"], ["logreg", "mlp"]).predictions["mlp"][1].label


def test_a_fault_strikes_where_the_stage_runs() -> None:
    service, encoder, heads = wrapped(MARKERS)
    with pytest.raises(InjectedFault, match="tokenize"):
        service.predict(["BADTOK"], ["logreg"])
    assert not encoder.calls  # tokenize failed: nothing was encoded
    with pytest.raises(InjectedFault, match="encode"):
        service.predict(["BADENC"], ["logreg"])
    assert not encoder.calls  # the encoder pass itself failed
    with pytest.raises(InjectedFault, match="head"):
        service.predict(["BADHEAD"], ["logreg"])
    assert encoder.encoded == ["BADHEAD"]  # encoded, then the head refused it
    plain = heads["logreg"]
    assert isinstance(plain, FaultyHead) and isinstance(plain.inner, FakeHead) and plain.inner.calls == 0


def test_an_unmarked_text_is_served_as_without_the_switches() -> None:
    service, _, _ = wrapped(MARKERS)
    texts = ["a text about hockey", "one about space", "a text about hockey"]
    plain = InferenceService(FakeEncoder(), {"logreg": FakeHead("logreg")}).predict(texts, ["logreg"])
    faulty = service.predict(texts, ["logreg"])
    assert [p.top for p in faulty.predictions["logreg"]] == [p.top for p in plain.predictions["logreg"]]
    assert faulty.stats.encoded == plain.stats.encoded == 2


def test_only_the_stages_named_are_wrapped() -> None:
    encoder, heads = FakeEncoder(), Heads({"logreg": FakeHead("logreg")})
    assert with_test_faults(Settings(test_switches=True), encoder, heads) is encoder
    assert with_test_faults(Settings(test_switches=True, fault_markers="shape=S"), encoder, heads) is encoder
    faulty = with_test_faults(Settings(test_switches=True, fault_markers="encode=E"), encoder, heads)
    assert isinstance(faulty, FaultyEncoder) and isinstance(heads["logreg"], FakeHead)  # no head marker
    assert faulty.version == encoder.version and faulty.dim == encoder.dim  # the wrapped encoder's
    assert np.array_equal(faulty.encode(["x"]), encoder.encode(["x"]))


def test_the_shape_fault_wraps_the_batchers_shaping() -> None:
    assert StageFaults({}).wrap_shape(shape_answer) is shape_answer
    assert StageFaults({"encode": "E"}).wrap_shape(shape_answer) is shape_answer
    with pytest.raises(ValueError, match="stage=marker"):
        StageFaults.parse("paint=RED")


# -- bootstrap: the one place the switches are applied --------------------------------------------------
def fake_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    def load_head(settings: Settings, registry: Registry, model: str, version: int, **_: Any) -> FakeHead:
        return FakeHead(model, str(version))

    monkeypatch.setattr(bootstrap, "load_encoder", lambda settings, steps=None: FakeEncoder())
    monkeypatch.setattr(bootstrap, "load_head", load_head)


def settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(
        models=("logreg",),
        registry_bucket=BUCKET,
        registry_table=TABLE,
        model_cache_dir=str(tmp_path / "models"),
        routing_ttl_seconds=0,  # every request reads the routing ...
        routing_load_wait_seconds=10,  # ... and waits for a new head
        **kw,
    )


def test_a_runtime_without_the_switches_has_no_fault_wrapper(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.register("logreg", artifact(tmp_path, "h1.onnx", b"1"), format="onnx", stage="production")
    fake_loads(monkeypatch)
    runtime = bootstrap.build_runtime(settings(tmp_path, fault_markers=MARKERS))  # markers, switches off
    service = runtime.service
    assert isinstance(service.encoder, FakeEncoder) and isinstance(service.heads["logreg"], FakeHead)
    assert service.predict(["BADHEAD BADENC OUTAGE"], ["logreg"]).predictions["logreg"][0].label


def test_a_test_stack_runtime_wraps_the_encoder_and_every_head_it_loads(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.register("logreg", artifact(tmp_path, "h1.onnx", b"1"), format="onnx", stage="production")
    fake_loads(monkeypatch)
    runtime = bootstrap.build_runtime(settings(tmp_path, test_switches=True, fault_markers=MARKERS))
    service = runtime.service
    assert isinstance(service.encoder, FaultyEncoder) and isinstance(service.heads["logreg"], FaultyHead)
    with pytest.raises(InjectedFault, match="head"):
        service.predict(["BADHEAD"], ["logreg"])
    registry.register("logreg", artifact(tmp_path, "h2.onnx", b"2"), format="onnx", stage="production")
    head = service.heads["logreg"]  # the routing read finds v2, loaded in the background and waited for
    assert head.version == "2" and isinstance(head, FaultyHead)
    with pytest.raises(InjectedFault, match="head"):
        service.predict(["BADHEAD again"], ["logreg"])
