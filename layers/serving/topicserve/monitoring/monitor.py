"""One monitoring window judged against the reference: what the scheduled monitor function and
``topicserve monitor`` compute, flag, publish and draw.

Per model (all its versions together: traffic is traffic): the PSI of its predicted-class distribution
against the reference's, and the change of its mean confidence. For the inputs: the domain-classifier
ROC AUC of the window's sampled embeddings against the reference embeddings, and the mean-shift ratio.
A statistic is only judged on enough data (``min_predictions``, ``min_embeddings``); below that it is
reported and not flagged.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from topicserve.monitoring.capture import MonitorStore, WindowSums
from topicserve.monitoring.drift import chance_psi, domain_auc, mean_shift, psi
from topicserve.monitoring.reference import Reference
from topicserve.settings import FromEnv, setting

if TYPE_CHECKING:
    from topicserve.registry.store import Registry


@dataclass(frozen=True)
class DriftThresholds(FromEnv):
    """What the monitor flags (template.yaml: DriftAucThreshold, DriftPsiThreshold)."""

    psi: float = setting(
        0.2,
        env="DRIFT_PSI_THRESHOLD",
        why="predicted-class PSI that flags drift (0.25 is the usual 'shift': 0.2 flags it a little earlier)",
    )
    psi_over_chance: float = setting(
        4.0, env="DRIFT_PSI_OVER_CHANCE", why="... and only at this many times what sampling alone gives"
    )
    # Evidently calls drift at AUC > 0.55; on 20NG's by-date split, test texts against held-out train texts
    # already reach 0.52-0.57 with 400 samples (measured, docs/MONITORING.md), so 0.55 would alarm on
    # the very traffic the models were validated for
    auc: float = setting(
        0.65,
        env="DRIFT_AUC_THRESHOLD",
        why="domain-classifier ROC AUC of the sampled embeddings that flags drift (test vs train: 0.52-0.57)",
    )
    mean_shift: float = setting(
        4.0,
        env="DRIFT_MEAN_SHIFT_THRESHOLD",
        why="embedding mean-shift ratio that flags drift (~1 without drift; 1.0-1.4 test vs train texts)",
    )
    confidence_change: float = setting(
        0.1, env="DRIFT_CONFIDENCE_CHANGE", why="absolute change of the mean top probability that flags drift"
    )
    min_predictions: int = setting(
        100, env="DRIFT_MIN_PREDICTIONS", why="answers a window needs before its predictions are judged"
    )
    min_embeddings: int = setting(
        50, env="DRIFT_MIN_EMBEDDINGS", why="sampled embeddings a window needs before its inputs are judged"
    )


def evaluate_window(
    window: str,
    sums: Mapping[tuple[str, str], WindowSums],
    embeddings: np.ndarray,
    reference: Reference,
    t: DriftThresholds,
) -> dict[str, Any]:
    models: dict[str, Any] = {}
    per_model: dict[str, WindowSums] = {}
    for (model, _version), s in sums.items():
        total = per_model.setdefault(model, WindowSums())
        total.add_sums(s)
    for model, s in sorted(per_model.items()):
        if model not in reference.classes:
            models[model] = {"n": s.n, "note": "no reference for this model"}
            continue
        enough = s.n >= t.min_predictions
        ref_classes = reference.classes[model]
        value = psi(ref_classes, s.classes[: len(ref_classes)]) if s.n else None
        # sampling noise comes from distinct texts: a text answered twice adds no information
        chance = chance_psi(ref_classes, s.distinct or s.n, reference.n)
        mean_conf = s.conf_sum / s.n if s.n else None
        change = mean_conf - reference.mean_confidence[model] if mean_conf is not None else None
        flags = []
        if enough and value is not None and value > max(t.psi, t.psi_over_chance * chance):
            flags.append("prediction_psi")
        if enough and change is not None and abs(change) > t.confidence_change:
            flags.append("confidence")
        models[model] = {
            "n": s.n,
            "distinct": s.distinct,
            "psi": _r(value),
            "psi_by_chance": _r(chance) if s.n else None,
            "mean_confidence": _r(mean_conf),
            "reference_mean_confidence": _r(reference.mean_confidence[model]),
            "confidence_change": _r(change),
            "classes": s.classes.tolist(),
            "versions": sorted(v for m, v in sums if m == model),
            "flags": flags,
        }
    emb: dict[str, Any] = {
        "n": len(embeddings),
        "reference_n": len(reference.embeddings),
        "flags": [],
    }
    if len(embeddings) >= 2:
        emb["auc"] = _r(domain_auc(reference.embeddings, embeddings)) if len(embeddings) >= 10 else None
        emb["mean_shift"] = _r(mean_shift(reference.embeddings, embeddings))
        if len(embeddings) >= t.min_embeddings:
            if emb["auc"] is not None and emb["auc"] > t.auc:
                emb["flags"].append("embedding_auc")
            if emb["mean_shift"] > t.mean_shift:
                emb["flags"].append("embedding_mean_shift")
    drift = bool(emb["flags"]) or any(m.get("flags") for m in models.values())
    return {
        "window": window,
        "drift": drift,
        "models": models,
        "embeddings": emb,
        "thresholds": asdict(t),
        "labels": reference.labels,
    }


def accuracy_rows(quality: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The live-accuracy panel's bars: one per (model, version) with labels in the window, production's
    first in each model, with its interval and the offline (reference) accuracy. Pure."""
    rows = []
    for model, entry in sorted(quality.items()):
        versions = entry.get("versions", {})
        order = sorted(versions, key=lambda v: (v != entry.get("production"), _version_key(v)))
        for version in order:
            q = versions[version]
            if q.get("accuracy") is None:
                continue
            rows.append(
                {
                    "name": f"{model} v{version} ({q.get('stage') or '-'}, n={q['labelled']})",
                    "accuracy": q["accuracy"],
                    "low": q["accuracy_low"],
                    "high": q["accuracy_high"],
                    "reference": q.get("reference_accuracy"),
                    "reference_low": q.get("reference_low"),
                    "below": bool(q.get("below_reference")),
                }
            )
    return rows


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


def _accuracy_panel(ax: Any, rows: list[dict[str, Any]]) -> None:
    """Live accuracy per version with its 95 % interval, the offline accuracy (and its interval's lower
    end, the alarm's line) as markers; a version below its reference in red."""
    y = np.arange(len(rows))[::-1]
    acc = np.array([r["accuracy"] for r in rows])
    err = np.array([[r["accuracy"] - r["low"] for r in rows], [r["high"] - r["accuracy"] for r in rows]])
    colors = ["#d9534f" if r["below"] else "#337ab7" for r in rows]
    ax.barh(y, acc, xerr=err, color=colors, height=0.6, capsize=3, label="live accuracy (95 % interval)")
    with_ref = [(yi, r) for yi, r in zip(y, rows, strict=True) if r["reference"] is not None]
    if with_ref:
        ax.scatter(
            [r["reference"] for _, r in with_ref],
            [yi for yi, _ in with_ref],
            marker="D",
            color="k",
            s=18,
            zorder=3,
            label="offline accuracy",
        )
        ax.scatter(
            [r["reference_low"] for _, r in with_ref],
            [yi for yi, _ in with_ref],
            marker="|",
            color="k",
            s=120,
            zorder=3,
            label="offline lower bound (alarm)",
        )
    ax.set_yticks(y, [r["name"] for r in rows], fontsize=7)
    ax.set_xlim(0, 1)
    ax.legend(fontsize=7, loc="lower right")
    below = [r["name"] for r in rows if r["below"]]
    verdict = "BELOW REFERENCE: " + ", ".join(below) if below else "ok"
    ax.set_title(f"live accuracy from label feedback, per version  {verdict}", fontsize=9)


def render_png(report: dict[str, Any], reference: Reference) -> bytes:
    """The report as a picture: per model, reference vs window class proportions (with PSI), the
    embedding test, and the live accuracy per version where labels came back (``report["quality"]``).
    matplotlib is imported here only (the monitor's own layer; the CLI's venv)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m, v in report["models"].items() if "classes" in v]
    accuracy = accuracy_rows(report.get("quality") or {})
    heights = [2.3] * (len(models) + 1) + ([1.4 + 0.35 * len(accuracy)] if accuracy else [])
    rows = len(heights)
    fig, axes = plt.subplots(
        rows, 1, figsize=(11, sum(heights)), squeeze=False, gridspec_kw={"height_ratios": heights}
    )
    x = np.arange(len(report["labels"]))
    for ax, model in zip(axes[:, 0], models, strict=False):
        m = report["models"][model]
        cur = np.asarray(m["classes"], dtype=float)
        cur = cur / cur.sum() if cur.sum() else cur
        ax.bar(x - 0.2, reference.classes[model], width=0.4, label="reference (validation)", color="#9aa5b1")
        ax.bar(
            x + 0.2,
            cur,
            width=0.4,
            label=f"window (n={m['n']})",
            color="#d9534f" if m["flags"] else "#337ab7",
        )
        verdict = "DRIFT " + ",".join(m["flags"]) if m["flags"] else "ok"
        ax.set_title(
            f"{model}: PSI {m['psi']}  mean confidence {m['mean_confidence']} "
            f"(ref {m['reference_mean_confidence']})  {verdict}",
            fontsize=9,
        )
        ax.set_xticks(x, [".".join(lbl.split(".")[-2:]) for lbl in report["labels"]], fontsize=6, rotation=45)
        ax.legend(fontsize=7, loc="upper right")
    if accuracy:
        _accuracy_panel(axes[-1, 0], accuracy)
    ax = axes[len(models), 0]
    e = report["embeddings"]
    values = [
        e.get("auc") or 0.0,
        min((e.get("mean_shift") or 0.0) / report["thresholds"]["mean_shift"], 2.0),
    ]
    ax.barh(
        ["domain classifier AUC", "mean shift / threshold"],
        values,
        color=["#d9534f" if e["flags"] else "#337ab7"] * 2,
    )
    ax.axvline(report["thresholds"]["auc"], color="k", linestyle="--", linewidth=1)
    ax.set_xlim(0, 2.0)
    verdict = "DRIFT " + ",".join(e["flags"]) if e["flags"] else "ok"
    ax.set_title(
        f"inputs: {e['n']} sampled embeddings vs {e['reference_n']} reference  {verdict}", fontsize=9
    )
    fig.suptitle(
        f"drift report, window {report['window']}: {'DRIFT' if report['drift'] else 'no drift'}", fontsize=11
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def run_window(
    store: MonitorStore, reference: Reference, window: str, thresholds: DriftThresholds
) -> dict[str, Any]:
    """Read one window's captures and judge them."""
    return evaluate_window(
        window, store.window_sums(window), store.window_embeddings(window), reference, thresholds
    )


def load_reference(registry: Registry, folder: str) -> Reference:
    """The production reference of the served encoder, downloaded and sha256-checked by the registry."""
    from topicserve.catalogue import SERVED_ENCODER
    from topicserve.registry.manifest import reference_model_name

    record = registry.resolve(reference_model_name(SERVED_ENCODER))
    return Reference.load(registry.download(record, folder))
