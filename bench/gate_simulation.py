"""The rollout gate's error rates, simulated in process: how often it rolls back a good candidate, promotes
a bad one, and how many texts it needs to decide.

    python -m bench.gate_simulation [--runs 1000] [--alpha 0.05] [--min-effect 0.01]
        # writes bench/results/gate-simulation.json and bench/results/gate-simulation.png

Each simulated rollout is a candidate head against production (accuracy ~0.72, like the real heads) on
the same texts. Every look ("minute") adds ``--texts-per-look`` attempts; the candidate fails on a few
(0.1 %, under the 1 % limit); each compared text falls in one of five outcomes (only the candidate right,
only production right, both right, both wrong with the same label, both wrong with different labels).
Its true label comes back for 90 % of the texts (``--missing`` 0.1), each after a delay of 1 to
``--max-delay`` looks, so the labelled sums lag and thin the compared ones, as feedback does in service.
At every look the gate reads the *sums* and runs :func:`topicserve.rollout.sequential.decide_codes`, the
same arithmetic as the gate's :func:`~topicserve.rollout.sequential.decide`; the first look that is not
WAIT is the rollout's outcome. A rollout still undecided after ``--horizon`` compared texts counts as
undecided.

Which outcomes are false: for a candidate truly equal or better (truth >= 0) a rollback; for one worse by
at least ``min_effect`` (truth <= -min_effect) a promotion. A candidate in between may get either. The
rates are over all runs of a case (undecided runs included in the denominator).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from topicserve.rollout.sequential import PROMOTE_CODE, ROLLBACK_CODE, check_alpha, check_rate, decide_codes

RESULTS = Path(__file__).resolve().parent / "results"
BASE_ACCURACY = 0.72  # production's accuracy (the real heads score 0.70-0.73 on the 20NG test texts)


@dataclass(frozen=True)
class Case:
    name: str
    truth: float  # accuracy(candidate) - accuracy(production)
    discordance: float = 0.15  # P(exactly one of the two is right): the heads agree on most texts
    both_wrong_differ: float = 0.4  # of the texts both get wrong, the share they label differently


CASES = (
    Case("better by 3 points", 0.03),
    Case("equal", 0.0),
    Case("equal, near-identical retrain", 0.0, discordance=0.004, both_wrong_differ=0.01),
    Case("worse by 1 point", -0.01),
    Case("worse by 3 points", -0.03),
    Case("worse by 5 points", -0.05),
)


@dataclass(frozen=True)
class Settings:
    runs: int = 1000
    alpha: float = 0.05
    min_effect: float = 0.01
    max_error_rate: float = 0.01
    failure_rate: float = 0.001  # the simulated candidate's own failure rate (acceptable: < max_error_rate)
    texts_per_look: int = 100  # attempts between two looks of the gate (a minute of traffic)
    horizon: int = 60_000  # compared texts after which a rollout counts as undecided
    missing: float = 0.1  # share of texts whose label never comes back
    max_delay: int = 30  # a label arrives 1..max_delay looks after its text
    seed: int = 26
    chunk: int = 100  # runs simulated at once (memory: chunk x looks x 3 x max_delay counts)

    def __post_init__(self) -> None:
        check_alpha(self.alpha)
        check_rate("min_effect", self.min_effect)
        check_rate("max_error_rate", self.max_error_rate)
        if not 0 <= self.failure_rate < 1 or not 0 <= self.missing < 1:
            raise ValueError("failure_rate and missing must be in [0, 1)")
        for name in ("runs", "texts_per_look", "horizon", "max_delay", "chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def looks(self) -> int:
        return -(-self.horizon // self.texts_per_look)


def outcome_probabilities(case: Case, base: float = BASE_ACCURACY) -> npt.NDArray[np.float64]:
    """P(candidate only right, production only right, both right, both wrong same, both wrong differ)."""
    cand_only = (case.discordance + case.truth) / 2
    prod_only = (case.discordance - case.truth) / 2
    both_right = base - prod_only
    both_wrong = 1 - base - cand_only
    p = np.array(
        [
            cand_only,
            prod_only,
            both_right,
            both_wrong * (1 - case.both_wrong_differ),
            both_wrong * case.both_wrong_differ,
        ]
    )
    if (p < 0).any() or abs(p.sum() - 1) > 1e-9:
        raise ValueError(f"case {case.name!r} is impossible with accuracy {base}: {p}")
    return p


def simulate_chunk(
    case: Case, s: Settings, runs: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``runs`` rollouts of one case: (decision code, compared texts, labelled texts) at the deciding look."""
    looks = s.looks
    attempts = np.full((runs, looks), s.texts_per_look, dtype=np.int64)
    errors = rng.binomial(attempts, s.failure_rate)
    compared = attempts - errors
    outcomes = rng.multinomial(compared, outcome_probabilities(case))  # (runs, looks, 5)
    disagreed = outcomes[..., 0] + outcomes[..., 1] + outcomes[..., 4]
    # the labelled texts by outcome class: candidate only right, production only right, the rest
    kinds = np.stack([outcomes[..., 0], outcomes[..., 1], outcomes[..., 2:].sum(axis=-1)], axis=-1)
    labelled_now = rng.binomial(kinds, 1 - s.missing)
    by_delay = rng.multinomial(labelled_now, np.full(s.max_delay, 1 / s.max_delay))  # (runs, looks, 3, D)
    arrived = np.zeros_like(labelled_now)
    for d in range(s.max_delay):  # delay d + 1 looks
        arrived[:, d + 1 :, :] += by_delay[:, : looks - d - 1, :, d]
    cum = {
        "compared": compared.cumsum(axis=1),
        "disagreed": disagreed.cumsum(axis=1),
        "attempts": attempts.cumsum(axis=1),
        "errors": errors.cumsum(axis=1),
    }
    lab = arrived.cumsum(axis=1)
    codes = decide_codes(
        **cum,
        labelled=lab.sum(axis=-1),
        candidate_only_correct=lab[..., 0],
        production_only_correct=lab[..., 1],
        alpha=s.alpha,
        min_effect=s.min_effect,
        max_error_rate=s.max_error_rate,
    )
    decided = codes != 0
    first = decided.argmax(axis=1)
    rows = np.arange(runs)
    any_decided = decided.any(axis=1)
    decision = np.where(any_decided, codes[rows, first], 0).astype(np.int8)
    texts = np.where(any_decided, cum["compared"][rows, first], cum["compared"][:, -1])
    labelled = np.where(any_decided, lab.sum(axis=-1)[rows, first], lab.sum(axis=-1)[:, -1])
    return decision, texts, labelled


def summarise(
    case: Case,
    s: Settings,
    decision: npt.NDArray[np.int8],
    texts: npt.NDArray[np.int64],
    labelled: npt.NDArray[np.int64],
) -> dict[str, Any]:
    """One case's row: decision rates, the false ones by the case's truth, and texts to decide."""
    runs = len(decision)
    promoted = decision == PROMOTE_CODE
    rolled_back = decision == ROLLBACK_CODE
    decided = promoted | rolled_back
    rollback_is_false = case.truth >= 0
    promotion_is_false = case.truth <= -s.min_effect + 1e-12
    return {
        "case": case.name,
        "truth": case.truth,
        "discordance": case.discordance,
        "runs": runs,
        "alpha": s.alpha,
        "min_effect": s.min_effect,
        "promote_rate": float(promoted.mean()),
        "rollback_rate": float(rolled_back.mean()),
        "undecided_rate": float((~decided).mean()),
        "rollback_is_false": rollback_is_false,
        "promotion_is_false": promotion_is_false,
        "false_rollback_rate": float(rolled_back.mean()) if rollback_is_false else 0.0,
        "false_promotion_rate": float(promoted.mean()) if promotion_is_false else 0.0,
        "median_texts_to_decide": float(np.median(texts[decided])) if decided.any() else None,
        "p90_texts_to_decide": float(np.percentile(texts[decided], 90)) if decided.any() else None,
        "median_labelled_to_decide": float(np.median(labelled[decided])) if decided.any() else None,
    }


def simulate(s: Settings, cases: Sequence[Case] = CASES, *, progress: bool = True) -> dict[str, Any]:
    rng = np.random.default_rng(s.seed)
    rows, raw = [], []
    for case in cases:
        start = time.monotonic()
        parts = []
        for done in range(0, s.runs, s.chunk):
            parts.append(simulate_chunk(case, s, min(s.chunk, s.runs - done), rng))
        decision = np.concatenate([p[0] for p in parts])
        texts = np.concatenate([p[1] for p in parts])
        labelled = np.concatenate([p[2] for p in parts])
        row = summarise(case, s, decision, texts, labelled)
        rows.append(row)
        raw.append(
            {
                "case": case.name,
                "decision": decision.tolist(),
                "texts": texts.tolist(),
                "labelled": labelled.tolist(),
            }
        )
        if progress:
            say(
                f"{case.name}: promote {row['promote_rate']:.3f}, roll back {row['rollback_rate']:.3f}, "
                f"undecided {row['undecided_rate']:.3f}, median {row['median_texts_to_decide']} texts "
                f"({time.monotonic() - start:.1f} s)"
            )
    within = all(r["false_rollback_rate"] <= s.alpha and r["false_promotion_rate"] <= s.alpha for r in rows)
    return {
        "name": "gate-simulation",
        "settings": asdict(s),
        "base_accuracy": BASE_ACCURACY,
        "decision_codes": {"0": "undecided", "1": "promote", "2": "rollback"},
        "cases": rows,
        "all_false_rates_within_alpha": within,
        "raw": raw,
    }


def table(result: dict[str, Any]) -> str:
    """The markdown table docs/ROLLOUT.md quotes."""
    lines = [
        "| case | truth | runs | promoted | rolled back | undecided | false rollback | false promotion "
        "| median texts to decide | median labelled |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["cases"]:
        lines.append(
            f"| {r['case']} | {r['truth']:+.2f} | {r['runs']} | {r['promote_rate']:.3f} | "
            f"{r['rollback_rate']:.3f} | {r['undecided_rate']:.3f} | "
            f"{_rate(r['false_rollback_rate'], r['rollback_is_false'])} | "
            f"{_rate(r['false_promotion_rate'], r['promotion_is_false'])} | "
            f"{_int(r['median_texts_to_decide'])} | {_int(r['median_labelled_to_decide'])} |"
        )
    return "\n".join(lines)


def _rate(value: float, applies: bool) -> str:
    return f"{value:.3f}" if applies else "-"


def _int(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = result["cases"]
    alpha = result["settings"]["alpha"]
    names = [c["case"] for c in cases]
    y = np.arange(len(cases))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.6 * len(cases) + 2.2), sharey=True)
    promote = np.array([c["promote_rate"] for c in cases])
    rollback = np.array([c["rollback_rate"] for c in cases])
    undecided = np.array([c["undecided_rate"] for c in cases])
    left.barh(y, promote, color="#4c9a2a", label="promoted")
    left.barh(y, rollback, left=promote, color="#c0392b", label="rolled back")
    left.barh(y, undecided, left=promote + rollback, color="#bbbbbb", label="undecided")
    for i, c in enumerate(cases):
        false = max(c["false_rollback_rate"], c["false_promotion_rate"])
        if c["rollback_is_false"] or c["promotion_is_false"]:
            left.text(1.01, i, f"false {false:.3f}", va="center", fontsize=8)
    left.set_xlim(0, 1.22)
    left.set_yticks(y, [f"{n} ({c['truth']:+.2f})" for n, c in zip(names, cases, strict=True)])
    left.invert_yaxis()
    left.set_xlabel(f"share of {cases[0]['runs']} rollouts (alpha {alpha})")
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=8, frameon=False)
    left.set_title("decisions")
    for i, r in enumerate(result["raw"]):
        texts = np.asarray(r["texts"])[np.asarray(r["decision"]) != 0]
        if len(texts):
            q = np.percentile(texts, [10, 50, 90])
            right.plot([q[0], q[2]], [i, i], color="#555555")
            right.plot(q[1], i, "o", color="#1f77b4")
    right.set_xscale("log")
    right.set_xlabel("compared texts to decide (median, 10th-90th percentile of decided runs)")
    right.set_title("texts to decide")
    right.grid(axis="x", alpha=0.3)
    st = result["settings"]
    fig.suptitle(
        f"Sequential rollout gate: min_effect {st['min_effect']}, "
        f"{round(st['missing'] * 100)} % labels missing, delay 1-{st['max_delay']} looks"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    d = Settings()
    p = argparse.ArgumentParser(prog="python -m bench.gate_simulation", description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=d.runs, help="simulated rollouts per case")
    p.add_argument("--alpha", type=float, default=d.alpha, help="the gate's false-decision rate (GateAlpha)")
    p.add_argument(
        "--min-effect", type=float, default=d.min_effect, help="GateMinEffect (accuracy points / 100)"
    )
    p.add_argument("--max-error-rate", type=float, default=d.max_error_rate)
    p.add_argument("--texts-per-look", type=int, default=d.texts_per_look)
    p.add_argument("--horizon", type=int, default=d.horizon, help="compared texts before 'undecided'")
    p.add_argument("--missing", type=float, default=d.missing, help="share of labels never sent back")
    p.add_argument("--max-delay", type=int, default=d.max_delay, help="labels arrive 1..N looks later")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for gate-simulation.json and .png")
    a = p.parse_args(argv)
    s = Settings(
        runs=a.runs,
        alpha=a.alpha,
        min_effect=a.min_effect,
        max_error_rate=a.max_error_rate,
        texts_per_look=a.texts_per_look,
        horizon=a.horizon,
        missing=a.missing,
        max_delay=a.max_delay,
        seed=a.seed,
    )
    start = time.monotonic()
    result = simulate(s)
    result["command"] = "python -m bench.gate_simulation " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    result["seconds"] = round(time.monotonic() - start, 1)
    a.out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = a.out / "gate-simulation.json", a.out / "gate-simulation.png"
    json_path.write_text(json.dumps(result) + "\n")
    plot(result, png_path)
    say(f"wrote {json_path} and {png_path}")
    print(table(result))
    if not result["all_false_rates_within_alpha"]:
        say(f"a false-decision rate is above alpha {s.alpha}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
