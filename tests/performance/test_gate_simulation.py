"""The gate simulator (bench/gate_simulation.py) at a few runs: its JSON, its rates computed right from its
raw outcomes, its plot. The targets (every false-decision rate <= alpha over >= 1,000 rollouts per case) are
the bench's (`python -m bench.gate_simulation`), not asserted here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench import gate_simulation as gs

SMALL = gs.Settings(runs=12, horizon=4000, texts_per_look=200, max_delay=5, chunk=5, seed=1)


def test_outcome_probabilities_give_the_case_its_accuracy_difference_and_discordance() -> None:
    for case in gs.CASES:
        p = gs.outcome_probabilities(case)
        assert p.sum() == pytest.approx(1) and (p >= 0).all()
        assert p[0] - p[1] == pytest.approx(case.truth)  # candidate only right - production only right
        assert p[0] + p[1] == pytest.approx(case.discordance)
        assert p[0] + p[2] == pytest.approx(gs.BASE_ACCURACY + case.truth)  # candidate accuracy
    with pytest.raises(ValueError, match="impossible"):
        gs.outcome_probabilities(gs.Case("nonsense", truth=0.3, discordance=0.1))


def test_rates_are_counted_against_the_cases_truth() -> None:
    s = gs.Settings(min_effect=0.01)
    decision = np.array([1, 2, 0, 1], dtype=np.int8)  # promote, rollback, undecided, promote
    texts = np.array([100, 300, 4000, 200])
    labelled = np.array([10, 30, 400, 20])
    equal = gs.summarise(gs.Case("equal", 0.0), s, decision, texts, labelled)
    assert equal["false_rollback_rate"] == 0.25 and equal["false_promotion_rate"] == 0.0
    assert equal["undecided_rate"] == 0.25 and equal["promote_rate"] == 0.5
    assert equal["median_texts_to_decide"] == 200 and equal["median_labelled_to_decide"] == 20
    worse = gs.summarise(gs.Case("worse", -0.03), s, decision, texts, labelled)
    assert worse["false_promotion_rate"] == 0.5 and worse["false_rollback_rate"] == 0.0
    boundary = gs.summarise(gs.Case("worse by min_effect", -0.01), s, decision, texts, labelled)
    assert boundary["promotion_is_false"] and not boundary["rollback_is_false"]
    between = gs.summarise(gs.Case("slightly worse", -0.005), s, decision, texts, labelled)
    assert between["false_promotion_rate"] == between["false_rollback_rate"] == 0.0
    none = gs.summarise(gs.Case("equal", 0.0), s, np.zeros(3, np.int8), texts[:3], labelled[:3])
    assert none["median_texts_to_decide"] is None and none["undecided_rate"] == 1.0


def test_a_small_simulation_is_deterministic_and_its_rows_match_its_raw_outcomes() -> None:
    a = gs.simulate(SMALL, progress=False)
    b = gs.simulate(SMALL, progress=False)
    assert a["cases"] == b["cases"]
    assert [r["case"] for r in a["cases"]] == [c.name for c in gs.CASES]
    for row, raw in zip(a["cases"], a["raw"], strict=True):
        decision = np.array(raw["decision"])
        assert row["runs"] == len(decision) == SMALL.runs
        assert row["promote_rate"] + row["rollback_rate"] + row["undecided_rate"] == pytest.approx(1)
        assert row["rollback_rate"] == pytest.approx((decision == 2).mean())
        if row["rollback_is_false"]:
            assert row["false_rollback_rate"] == row["rollback_rate"]
        if row["promotion_is_false"]:
            assert row["false_promotion_rate"] == row["promote_rate"]
        texts = np.array(raw["texts"])
        assert (texts <= SMALL.horizon).all() and (np.array(raw["labelled"]) <= texts).all()
        if (decision != 0).any():
            assert row["median_texts_to_decide"] == float(np.median(texts[decision != 0]))


def test_the_command_writes_the_json_and_the_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = gs.main(
        [
            "--runs",
            "6",
            "--horizon",
            "3000",
            "--texts-per-look",
            "300",
            "--max-delay",
            "3",
            "--out",
            str(tmp_path),
        ]
    )
    doc = json.loads((tmp_path / "gate-simulation.json").read_text())
    assert rc == (0 if doc["all_false_rates_within_alpha"] else 1)
    assert doc["settings"]["runs"] == 6 and doc["settings"]["alpha"] == 0.05
    for row in doc["cases"]:
        assert {
            "truth",
            "runs",
            "false_rollback_rate",
            "false_promotion_rate",
            "median_texts_to_decide",
            "undecided_rate",
            "alpha",
        } <= set(row)
    assert (tmp_path / "gate-simulation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr()
    assert "| case | truth |" in out.out and "equal" in out.err


def test_settings_are_checked_up_front() -> None:
    with pytest.raises(ValueError, match="alpha"):
        gs.Settings(alpha=0)
    with pytest.raises(ValueError, match="runs must be >= 1"):
        gs.Settings(runs=0)
