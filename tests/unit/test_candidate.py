"""``python -m training.candidate ... --register``: the rollout's first step, run to its registry (moto).

Training is replaced by a stub that returns what ``train`` returns (fitting a head needs the built models);
what runs for real is the command line, the registry it finds from ``build/stack.json`` as
``topicserve-registry`` does, and the calls into it, whose signatures mypy and this test both check: the
call that lost its registry argument (``register(entry, name)``) failed only when a user ran it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.unit.conftest import BUCKET, TABLE, artifact
from topicserve.registry import Registry, Stage
from training import candidate


@pytest.fixture
def trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """``candidate.train`` as a stub (the arguments it got are appended to the returned list), and a
    stack.json naming the moto bucket and table."""
    calls: list[dict[str, Any]] = []
    path = artifact(tmp_path, "logreg-C3.0.onnx", b"onnx bytes")

    def train(
        name: str, params: dict[str, Any], *, permute_seed: int | None = None, **extra: Any
    ) -> dict[str, Any]:
        calls.append({"name": name, "params": params, "permute_seed": permute_seed, **extra})
        subset = None
        if "train_texts" in extra:
            subset = {"n": extra["train_texts"], "of": 11314, "seed": extra["train_seed"]}
        return {
            "path": path,
            "sha256": "0" * 64,
            "hyperparameters": {"C": params.get("C", 1.0), "max_iter": 1000},
            "metrics": {"accuracy": 0.7},
            "labels": ["a", "b"],
            "dataset": {"sha256": "d" * 64},
            "encoder": {"variant": "int8", "sha256": "e" * 64},
            "permuted_labels": permute_seed is not None,
            "train_subset": subset,
        }

    stack = tmp_path / "stack.json"
    stack.write_text(json.dumps({"bucket": BUCKET, "tables": {"registry": TABLE}}))
    monkeypatch.setattr(candidate, "train", train)
    monkeypatch.setattr(candidate, "STACK_JSON", stack)
    for var in ("REGISTRY_BUCKET", "REGISTRY_TABLE", "ROLLOUT_TABLE"):
        monkeypatch.delenv(var, raising=False)
    return calls


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert candidate.main(argv) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_register_records_the_candidate_as_the_next_version(
    registry: Registry, trained: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    out = _run(["logreg", "--param", "C=3.0", "--register"], capsys)
    assert trained == [{"name": "logreg", "params": {"C": 3.0}, "permute_seed": None}]
    assert out["registered"]["version"] == 1 and out["registered"]["stage"] == "none"
    record = registry.show("logreg", 1)
    assert record.hyperparameters == {"C": 3.0, "max_iter": 1000}
    assert record.description == "candidate: C=3.0, max_iter=1000"
    assert record.lineage.encoder == {"variant": "int8", "sha256": "e" * 64}


def test_register_into_a_stage_chains_lineage_and_says_why(
    registry: Registry, trained: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    _run(["logreg", "--param", "C=3.0", "--register"], capsys)
    stage = ["--stage", "canary", "--weight", "0.2", "--reason", "broken on purpose"]
    out = _run(["logreg", "--param", "C=3.0", "--permute-labels", "7", "--register", *stage], capsys)
    assert out["registered"]["version"] == 2 and out["registered"]["stage"] == "canary"
    record = registry.show("logreg", 2)
    assert record.stage is Stage.CANARY and record.lineage.parent_version == 1
    assert record.description.endswith("(PERMUTED LABELS: deliberately broken)")
    assert registry.routing("logreg").canary_weight == 0.2
    assert registry.transitions("logreg")[-1].reason == "broken on purpose"


def test_register_without_a_stack_says_what_to_do(
    trained: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(candidate, "STACK_JSON", tmp_path / "missing.json")
    with pytest.raises(SystemExit, match=r"REGISTRY_BUCKET/REGISTRY_TABLE.*make deploy"):
        candidate.main(["logreg", "--register"])


def test_fewer_training_texts_are_asked_for_and_recorded(
    registry: Registry, trained: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    out = _run(["logreg", "--train-texts", "4000", "--train-seed", "3", "--register"], capsys)
    assert trained[-1] | {"params": {}} == {
        "name": "logreg",
        "params": {},
        "permute_seed": None,
        "train_texts": 4000,
        "train_seed": 3,
    }
    record = registry.show("logreg", out["registered"]["version"])
    assert record.description.endswith("(on 4000 of 11314 training texts, seed 3)")


def test_train_sample_is_stratified_seeded_and_checked() -> None:
    y = np.repeat(np.arange(4), [40, 30, 20, 10])
    keep = candidate.train_sample(y, 50, 1)
    assert len(keep) == 50 and np.all(np.diff(keep) > 0)
    assert np.bincount(y[keep]).tolist() == [20, 15, 10, 5]  # every class in its share
    assert np.array_equal(keep, candidate.train_sample(y, 50, 1))
    assert not np.array_equal(keep, candidate.train_sample(y, 50, 2))
    assert np.array_equal(candidate.train_sample(y, 100, 1), np.arange(100))
    nearly = candidate.train_sample(y, 95, 1)  # 5 left out: fewer than the classes, so not stratified
    assert len(nearly) == 95 and len(set(nearly.tolist())) == 95 and np.all(np.diff(nearly) > 0)
    assert not np.array_equal(nearly, candidate.train_sample(y, 95, 2))
    for bad in (3, 101, 2.5):
        with pytest.raises(ValueError, match="train_texts must be an int"):
            candidate.train_sample(y, bad, 1)  # type: ignore[arg-type]
