import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import BUCKET, TABLE, artifact
from topicserve.errors import ArtifactError, ChecksumMismatchError, RegistryError
from topicserve.registry import Lineage, Registry, Stage
from topicserve.registry.manifest import register_manifest
from topicserve.registry.store import sha256_file
from topicserve_ops.registry_cli import main as cli_main


def test_register_records_everything(registry: Registry, tmp_path: Path) -> None:
    path = artifact(tmp_path, "rf.onnx", b"forest")
    lineage = Lineage(
        dataset={"sha256": "d" * 64, "split": "bydate", "remove": ["headers", "footers", "quotes"]},
        encoder={"name": "minilm", "variant": "int8", "sha256": "e" * 64},
        code_revision="abc123",
    )
    rec = registry.register(
        "rf",
        path,
        format="onnx",
        metrics={"accuracy": 0.66},
        hyperparameters={"n_estimators": 100},
        labels=["a", "b"],
        lineage=lineage,
    )
    assert rec.version == 1 and rec.stage is Stage.NONE
    assert rec.sha256 == sha256_file(path) and rec.size_bytes == 6
    assert rec.artifact_uri == "s3://artifacts/models/rf/1/rf.onnx"
    shown = registry.show("rf", 1)
    assert shown == rec
    assert shown.metrics == {"accuracy": 0.66}  # floats survive (no Decimal)
    assert shown.lineage.encoder["variant"] == "int8"
    assert shown.created_at.endswith("+00:00")


def test_versions_increase_and_chain_lineage(registry: Registry, tmp_path: Path) -> None:
    for i in range(3):
        registry.register("mlp", artifact(tmp_path, f"m{i}.onnx", bytes([i])), format="onnx")
    assert [v.version for v in registry.list("mlp")] == [1, 2, 3]
    assert [v.version for v in registry.lineage("mlp", 3)] == [3, 2, 1]
    assert registry.show("mlp", 1).lineage.parent_version is None


def test_at_most_one_production_version_and_rollback(registry: Registry, tmp_path: Path) -> None:
    for i in range(3):
        registry.register("logreg", artifact(tmp_path, f"l{i}.onnx", bytes([i])), format="onnx")
    with pytest.raises(RegistryError, match="no production version"):
        registry.resolve("logreg")
    registry.promote("logreg", 1)
    registry.promote("logreg", 2, "staging")
    assert registry.resolve("logreg", "staging").version == 2
    registry.promote("logreg", 2)
    registry.promote("logreg", 3)
    stages = {v.version: v.stage for v in registry.list("logreg")}
    assert stages == {1: Stage.ARCHIVED, 2: Stage.ARCHIVED, 3: Stage.PRODUCTION}
    assert registry.resolve("logreg").version == 3
    assert registry.rollback("logreg").version == 2
    stages = {v.version: v.stage for v in registry.list("logreg")}
    assert stages == {1: Stage.ARCHIVED, 2: Stage.PRODUCTION, 3: Stage.ARCHIVED}
    assert registry.rollback("logreg").version == 1
    with pytest.raises(RegistryError, match="no earlier production version"):
        registry.rollback("logreg")


def test_production_version_cannot_be_moved_aside_silently(registry: Registry, tmp_path: Path) -> None:
    registry.register("hgb", artifact(tmp_path, "h.onnx", b"h"), format="onnx", stage=Stage.PRODUCTION)
    with pytest.raises(RegistryError, match="is in production"):
        registry.promote("hgb", 1, "archived")


def test_unknown_things_are_clear_errors(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="not in the registry"):
        registry.show("nope", 1)
    with pytest.raises(RegistryError, match="unknown stage"):
        registry.promote("nope", 1, "prod")
    with pytest.raises(ArtifactError, match="does not exist"):
        registry.register("x", tmp_path / "missing.onnx", format="onnx")


def test_download_verifies_sha256(registry: Registry, s3: Any, tmp_path: Path) -> None:
    rec = registry.register("rf", artifact(tmp_path, "rf.onnx", b"good bytes"), format="onnx")
    dest = tmp_path / "cache"
    path = registry.download(rec, dest)
    assert path.read_bytes() == b"good bytes"
    assert registry.download(rec, dest) == path  # reused, still verified
    # someone overwrites the object in S3: the download must refuse it and leave nothing behind
    s3.put_object(Bucket=BUCKET, Key="models/rf/1/rf.onnx", Body=b"evil bytes")
    path.unlink()
    with pytest.raises(ChecksumMismatchError, match="refusing to load"):
        registry.download(rec, dest)
    assert list(dest.iterdir()) == []


def test_download_of_missing_object_is_an_artifact_error(registry: Registry, s3: Any, tmp_path: Path) -> None:
    rec = registry.register("rf", artifact(tmp_path, "rf.onnx", b"x"), format="onnx")
    s3.delete_object(Bucket=BUCKET, Key="models/rf/1/rf.onnx")
    with pytest.raises(ArtifactError, match="cannot download"):
        registry.download(rec, tmp_path / "d")


def fake_manifest(tmp_path: Path) -> dict[str, Any]:
    entries: dict[str, Any] = {}
    for name in ("int8", "fp32", "logreg", "rf"):
        p = artifact(tmp_path, f"{name}.onnx", name.encode())
        entries[name] = {"path": p.name, "sha256": sha256_file(p), "size_bytes": p.stat().st_size}
    return {
        "quick": True,
        "labels": ["a", "b"],
        "dataset": {"sha256": "d" * 64, "split": "bydate"},
        "code_revision": "rev",
        "encoder": {v: {**entries[v], "fidelity": {"cos_mean": 0.99}} for v in ("int8", "fp32")},
        "heads": {
            h: {**entries[h], "format": "onnx", "metrics": {"accuracy": 0.5}, "hyperparameters": {"C": 1}}
            for h in ("logreg", "rf")
        },
    }


def test_register_manifest_is_idempotent_and_links_lineage(registry: Registry, tmp_path: Path) -> None:
    manifest = fake_manifest(tmp_path)
    first = register_manifest(registry, manifest, root=tmp_path, log=lambda s: None)
    again = register_manifest(registry, manifest, root=tmp_path, log=lambda s: None)
    assert {k: v.version for k, v in first.items()} == {k: v.version for k, v in again.items()}
    assert set(registry.names()) == {"encoder-int8", "encoder-fp32", "logreg", "rf"}
    rf = registry.resolve("rf")
    assert rf.lineage.encoder["sha256"] == manifest["encoder"]["int8"]["sha256"]
    assert rf.lineage.dataset["split"] == "bydate"
    assert rf.labels == ["a", "b"]


def test_register_manifest_records_the_test_count_the_accuracy_was_measured_on(
    registry: Registry, tmp_path: Path
) -> None:
    """The live-accuracy alarm compares with the lower end of the offline accuracy's interval at
    ``n_test`` (topicserve.feedback.quality): a head's own count wins, a manifest from before the build
    recorded one gives the dataset's."""
    from topicserve.feedback.quality import reference_low, references_from_metrics

    manifest = fake_manifest(tmp_path)
    manifest["dataset"]["n_test"] = 7532
    manifest["heads"]["rf"]["metrics"] = {"accuracy": 0.5, "n_test": 500}
    register_manifest(registry, manifest, root=tmp_path, log=lambda s: None)
    logreg, rf = registry.resolve("logreg"), registry.resolve("rf")
    assert logreg.metrics["n_test"] == 7532 and rf.metrics["n_test"] == 500
    refs = references_from_metrics({("logreg", "1"): logreg.metrics, ("rf", "1"): rf.metrics})
    assert refs == {("logreg", "1"): (0.5, 7532), ("rf", "1"): (0.5, 500)}
    assert reference_low(refs[("rf", "1")]) < reference_low(refs[("logreg", "1")]) < 0.5


def test_cli_roundtrip(registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = artifact(tmp_path, "mlp.onnx", b"net")
    base = ["--bucket", BUCKET, "--table", TABLE]
    assert cli_main([*base, "register", "mlp", str(path), "--metrics", '{"accuracy": 0.67}']) == 0
    assert cli_main([*base, "promote", "mlp", "1"]) == 0
    capsys.readouterr()
    assert cli_main([*base, "resolve", "mlp"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["version"] == 1 and out["stage"] == "production" and out["metrics"]["accuracy"] == 0.67
    assert cli_main([*base, "download", "mlp", "--dest", str(tmp_path / "dl")]) == 0
    assert Path(json.loads(capsys.readouterr().out)["path"]).read_bytes() == b"net"
    assert cli_main([*base, "show", "mlp", "9"]) == 2
    assert "not in the registry" in capsys.readouterr().err


def test_documents_from_newer_code_stay_readable() -> None:
    """A registry written by a newer release (fields this code does not know) must not break the functions
    still running this one: unknown fields are ignored."""
    from topicserve.registry.model import ModelVersion, Transition

    doc = json.dumps(
        {
            "name": "rf",
            "version": 3,
            "sha256": "a" * 64,
            "size_bytes": 1,
            "format": "onnx",
            "artifact_uri": "s3://b/k",
            "created_at": "2026-01-01T00:00:00+00:00",
            "future_field": 1,
            "lineage": {"code_revision": "x", "parent_version": 2, "future_lineage": {"a": 1}},
        }
    )
    record = ModelVersion.from_document(doc, stage="canary")
    assert record.version == 3 and record.lineage.parent_version == 2 and record.stage is Stage.CANARY
    t = Transition.from_document(
        json.dumps({"at": "t", "version": 1, "from_stage": "none", "to_stage": "shadow", "x": 1})
    )
    assert t.to_stage == "shadow"
