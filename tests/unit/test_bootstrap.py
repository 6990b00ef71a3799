from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import BUCKET, artifact
from topicserve.errors import ChecksumMismatchError
from topicserve.registry import Registry
from topicserve.rollout.router import Router


class Immediate(cf.Executor):
    """Runs a submitted load at once: the router's background loads become deterministic."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


class BytesHead:
    """A 'head' that is the verified artifact's bytes: enough to see which version was loaded."""

    def __init__(self, name: str, version: str, data: bytes) -> None:
        self.name, self.version, self.data, self.labels = name, version, data, None


def loader(registry: Registry, folder: Path) -> Any:
    def load(model: str, version: int) -> BytesHead:
        path = registry.download(registry.show(model, version), folder)
        return BytesHead(model, str(version), path.read_bytes())

    return load


def production_bytes(registry: Registry, folder: Path) -> bytes:
    router = Router(["rf"], registry, loader(registry, folder), executor=Immediate())
    router.start()
    head = router.current()["rf"].production
    assert isinstance(head, BytesHead)
    return head.data


def test_corrupt_production_artifact_falls_back_to_the_previous_version(
    registry: Registry,
    s3: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry.register("rf", artifact(tmp_path, "rf1.onnx", b"v1"), format="onnx", stage="production")
    registry.register("rf", artifact(tmp_path, "rf2.onnx", b"v2"), format="onnx", stage="production")
    assert production_bytes(registry, tmp_path / "cache") == b"v2"

    s3.put_object(Bucket=BUCKET, Key="models/rf/2/rf2.onnx", Body=b"tampered")
    for cached in (tmp_path / "cache").iterdir():
        cached.unlink()
    assert production_bytes(registry, tmp_path / "cache") == b"v1"
    refused = [r for r in caplog.records if "sha256" in r.getMessage() and r.name.startswith("topicserve")]
    assert refused and (refused[0].model, refused[0].version) == ("rf", 2)

    s3.put_object(Bucket=BUCKET, Key="models/rf/1/rf1.onnx", Body=b"tampered too")
    for cached in (tmp_path / "cache").iterdir():
        cached.unlink()
    with pytest.raises(ChecksumMismatchError, match="rf v2"):
        production_bytes(registry, tmp_path / "cache")
