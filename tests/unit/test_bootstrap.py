from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import BUCKET, artifact
from topicserve.bootstrap import fetch_head
from topicserve.errors import ChecksumMismatchError
from topicserve.registry import Registry
from topicserve.settings import Settings


def test_corrupt_production_artifact_falls_back_to_the_previous_version(
    registry: Registry,
    s3: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry.register("rf", artifact(tmp_path, "rf1.onnx", b"v1"), format="onnx", stage="production")
    registry.register("rf", artifact(tmp_path, "rf2.onnx", b"v2"), format="onnx", stage="production")
    settings = Settings(model_cache_dir=str(tmp_path / "cache"))
    record, path = fetch_head(settings, registry, "rf")
    assert record.version == 2 and path.read_bytes() == b"v2"

    s3.put_object(Bucket=BUCKET, Key="models/rf/2/rf2.onnx", Body=b"tampered")
    for cached in (tmp_path / "cache").iterdir():
        cached.unlink()
    record, path = fetch_head(settings, registry, "rf")
    assert record.version == 1 and path.read_bytes() == b"v1"
    refused = [r for r in caplog.records if r.name == "topicserve.bootstrap" and "sha256" in r.getMessage()]
    assert refused and (refused[0].model, refused[0].version) == ("rf", 2)

    s3.put_object(Bucket=BUCKET, Key="models/rf/1/rf1.onnx", Body=b"tampered too")
    for cached in (tmp_path / "cache").iterdir():
        cached.unlink()
    with pytest.raises(ChecksumMismatchError, match="rf v2"):
        fetch_head(settings, registry, "rf")
