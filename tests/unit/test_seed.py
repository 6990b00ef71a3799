"""The deploy's seed: a cold start serves the deploy's production head without reading the registry first,
applies the registry's routing at the first request, and refuses a seed whose bytes changed."""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import FakeHead, artifact
from tests.unit.test_bootstrap import Immediate
from topicserve.bootstrap import load_seed_head
from topicserve.errors import ChecksumMismatchError
from topicserve.registry import Registry
from topicserve.registry.model import Routing
from topicserve.rollout.router import Router
from topicserve.rollout.seed import SeedHead, parse_routing_seed, seed_heads, seed_routing_env

SHA_A = "a" * 64


def write_seed(folder: Path, model: str, data: bytes, labels: list[str] | None = None) -> str:
    sha = hashlib.sha256(data).hexdigest()
    seed_dir = folder / "seed"
    seed_dir.mkdir(parents=True, exist_ok=True)
    (seed_dir / f"{sha}.onnx").write_bytes(data)
    (seed_dir / f"{sha}.json").write_text(json.dumps({"model": model, "labels": labels or ["x", "y"]}))
    return sha


def test_routing_seed_round_trips_and_rejects_what_a_deploy_never_writes() -> None:
    raw = seed_routing_env({"rf": (3, SHA_A), "logreg": (1, "b" * 64)})
    assert parse_routing_seed(raw) == {"rf": (3, SHA_A), "logreg": (1, "b" * 64)}
    assert parse_routing_seed("") == {}
    bad_values = [
        "[1]",
        "{",
        json.dumps({"rf": [0, SHA_A]}),
        json.dumps({"rf": [1, "xyz"]}),
        json.dumps({"rf": [True, SHA_A]}),
    ]
    for bad in bad_values:
        with pytest.raises(ValueError, match="ROUTING_SEED"):
            parse_routing_seed(bad)


def test_seed_heads_are_found_by_sha256_and_a_missing_file_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sha = write_seed(tmp_path, "rf", b"rf-bytes", ["a", "b"])
    raw = seed_routing_env({"rf": (2, sha), "logreg": (1, SHA_A)})
    with caplog.at_level(logging.WARNING):
        found = seed_heads(raw, str(tmp_path), ["rf", "logreg"])
    assert found == {"rf": SeedHead("rf", 2, sha, tmp_path / "seed" / f"{sha}.onnx", ("a", "b"))}
    assert any(
        "no seed file" in r.getMessage() and getattr(r, "model", "") == "logreg" for r in caplog.records
    )
    assert seed_heads(raw, "", ["rf"]) == {}  # no encoder layer: nothing seeded


def test_a_tampered_seed_is_refused(tmp_path: Path) -> None:
    sha = write_seed(tmp_path, "rf", b"rf-bytes")
    path = tmp_path / "seed" / f"{sha}.onnx"
    path.write_bytes(b"tampered")
    with pytest.raises(ChecksumMismatchError, match="refusing"):
        load_seed_head(SeedHead("rf", 1, sha, path, ()))


class BlockedRegistry:
    """The registry's routing read, held until the test releases it: proves init does not wait for it."""

    def __init__(self, registry: Registry, *, fail: bool = False) -> None:
        self.registry, self.fail = registry, fail
        self.release = threading.Event()
        self.reads = 0

    def routings(self, names: Any) -> dict[str, Routing]:
        self.reads += 1
        assert self.release.wait(timeout=30)
        if self.fail:
            raise RuntimeError("registry unreachable")
        return self.registry.routings(names)


def seeded_router(reader: Any, loads: list[tuple[str, int]]) -> Router:
    def load(model: str, version: int) -> FakeHead:
        loads.append((model, version))
        return FakeHead(model, str(version))

    return Router(
        ["rf"],
        reader,
        load,
        load_seed=lambda seed: FakeHead(seed.model, str(seed.version)),
        executor=cf.ThreadPoolExecutor(max_workers=2),
        load_wait_seconds=30,
    )


def seed_of(version: int) -> dict[str, SeedHead]:
    return {"rf": SeedHead("rf", version, SHA_A, Path("unused"), ())}


def test_a_seeded_start_serves_without_the_registry_and_applies_it_at_the_first_request(
    registry: Registry, tmp_path: Path
) -> None:
    for v in (1, 2):
        registry.register(
            "rf", artifact(tmp_path, f"rf{v}.onnx", b"v%d" % v), format="onnx", stage="production"
        )
    reader = BlockedRegistry(registry)
    loads: list[tuple[str, int]] = []
    router = seeded_router(reader, loads)
    router.start(seed_of(1))
    assert reader.reads == 0 and loads == []  # init made no round trip
    router.read_in_background()  # after init: the read is held, nothing waits for it yet
    reader.release.set()
    route = router.current()["rf"]  # production moved to v2 since the deploy: the first request sees it
    assert route.production.version == "2" and loads == [("rf", 2)] and reader.reads == 1


def test_without_a_background_read_the_first_request_reads_the_routing(registry: Registry) -> None:
    reader = BlockedRegistry(registry)
    reader.release.set()
    router = seeded_router(reader, [])
    router.start(seed_of(1))
    registry_down = router.current()  # nothing registered: the read finds no routing, the seed serves
    assert registry_down["rf"].production.version == "1" and reader.reads == 1


def test_the_seed_keeps_serving_when_the_registry_is_unreachable(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    reader = BlockedRegistry(registry, fail=True)
    router = seeded_router(reader, [])
    router.start(seed_of(4))
    router.read_in_background()
    reader.release.set()
    with caplog.at_level(logging.WARNING):
        assert router.current()["rf"].production.version == "4"
    assert any("registry unreachable: serving the deploy's" in r.getMessage() for r in caplog.records)


def test_a_refused_seed_falls_back_to_the_registry(registry: Registry, tmp_path: Path) -> None:
    registry.register("rf", artifact(tmp_path, "rf1.onnx", b"v1"), format="onnx", stage="production")
    loads: list[tuple[str, int]] = []

    def refuse(seed: SeedHead) -> FakeHead:
        raise ChecksumMismatchError("tampered")

    router = Router(
        ["rf"],
        registry,
        lambda m, v: loads.append((m, v)) or FakeHead(m, str(v)),  # type: ignore[func-returns-value]
        load_seed=refuse,
        executor=Immediate(),
    )
    router.start(seed_of(1))
    assert router.current()["rf"].production.version == "1" and loads == [("rf", 1)]
