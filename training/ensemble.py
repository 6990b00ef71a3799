"""The ``ensemble`` head: a weighted soft vote of the four exported heads, as ONE ONNX graph.

Serving stays generic: the composed graph has the head interface (``embeddings`` float32 [N, 384] ->
``probabilities`` float32 [N, 20]), so ``topicserve.heads.Head`` loads it like any other head and the
shared embedding is computed once. Each member graph keeps its own ops under a ``<member>/`` prefix; its
probabilities are multiplied by a constant weight and the products are summed.

Weights are chosen on the validation split only, never on test: every member is refit with its chosen
hyperparameters on the fit split (the published heads were refit on all of train, validation included,
so their validation probabilities would be in-sample), and a grid over the simplex picks the weights with
the best validation accuracy, ties broken by validation log loss. Those weights then combine the published
(full-train) heads, and the test set only reports the result.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import TensorProto, helper
from sklearn.metrics import accuracy_score, f1_score

from topicserve.heads import EXACT_EMBEDDINGS, INPUT, OUTPUT
from training import heads as heads_mod
from training.common import MODELS, Embeddings, Json, Settings, cached_step, log, rel, sha256_file

if TYPE_CHECKING:
    from training.data import Dataset

NAME = "ensemble"
MEMBERS: tuple[str, ...] = tuple(heads_mod.FIT)  # logreg, rf, hgb, mlp
GRID_STEP = 0.05
EPS = 1e-15  # probability floor of the log loss (a forest can give the true class exactly 0)
#: Part of the ensemble steps' cache keys: bump when the weight search or the composition changes.
ENSEMBLE_CODE_VERSION = 1
ENCODING = "soft vote: member graphs prefixed '<member>/', each probabilities x constant weight, Sum"


# --------------------------------------------------------------------------- weights


def simplex_grid(n: int, step: float) -> np.ndarray:
    """Every vector of ``n`` non-negative multiples of ``step`` summing to 1, shape (candidates, n)."""
    k = round(1 / step)
    if k < 1 or abs(k * step - 1) > 1e-9:
        raise ValueError(f"grid step {step} does not divide 1")
    rows = []
    for bars in itertools.combinations(range(k + n - 1), n - 1):  # stars and bars
        edges = (-1, *bars, k + n - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(n)])
    return np.asarray(rows, dtype=np.float64) / k


def log_loss(proba: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(proba[np.arange(len(y)), y], EPS, None)).mean())


def choose_weights(
    probas: dict[str, np.ndarray], y: np.ndarray, step: float = GRID_STEP
) -> tuple[dict[str, float], dict[str, Any]]:
    """Weights over ``probas`` (member -> [n, classes] on the selection data) maximising accuracy on
    ``y``, ties broken by lower log loss, then by grid order. Only ``probas`` and ``y`` are read."""
    names = list(probas)
    stack = np.stack([np.asarray(probas[n], dtype=np.float64) for n in names])  # (members, n, classes)
    if stack.shape[1] != len(y):
        raise ValueError(f"{stack.shape[1]} rows of probabilities for {len(y)} labels")
    grid = simplex_grid(len(names), step)
    scored = []
    for i, w in enumerate(grid):
        mix = np.tensordot(w, stack, axes=1)
        scored.append((-int((mix.argmax(1) == y).sum()), log_loss(mix, y), i))
    scored.sort()
    best = grid[scored[0][2]]
    weights = {n: round(float(w), 10) for n, w in zip(names, best, strict=True)}

    def row(order: tuple[int, float, int]) -> dict[str, Any]:
        return {
            "weights": {n: round(float(w), 4) for n, w in zip(names, grid[order[2]], strict=True)},
            "accuracy": round(-order[0] / len(y), 4),
            "log_loss": round(order[1], 4),
        }

    singles = {
        n: {
            "accuracy": round(float((stack[j].argmax(1) == y).mean()), 4),
            "log_loss": round(log_loss(stack[j], y), 4),
        }
        for j, n in enumerate(names)
    }
    info = {
        "grid_step": step,
        "n_candidates": len(grid),
        "n_rows": len(y),
        "accuracy": row(scored[0])["accuracy"],
        "log_loss": row(scored[0])["log_loss"],
        "single_heads": singles,
        "top": [row(o) for o in scored[:5]],
    }
    return weights, info


# --------------------------------------------------------------------------- composition


def compose(members: dict[str, onnx.ModelProto], weights: dict[str, float]) -> onnx.ModelProto:
    """One graph: ``embeddings`` feeds every member (prefixed), ``probabilities`` = Sum(w_i * p_i)."""
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    value_info: list[onnx.ValueInfoProto] = []
    functions: list[onnx.FunctionProto] = []
    opsets: dict[str, int] = {}
    ir_version = 0
    terms = []
    for name, model in members.items():
        graph = model.graph
        ins, outs = [i.name for i in graph.input], [o.name for o in graph.output]
        if ins != [INPUT] or OUTPUT not in outs:
            raise ValueError(f"member {name!r} lacks the head interface: inputs {ins}, outputs {outs}")
        p = f"{name}/"
        prefixed = onnx.compose.add_prefix(model, p)
        g = prefixed.graph
        nodes.append(helper.make_node("Identity", [INPUT], [p + INPUT], name=p + "input"))
        nodes.extend(g.node)
        inits.extend(g.initializer)
        value_info.extend(g.value_info)
        functions.extend(prefixed.functions)
        inits.append(helper.make_tensor(p + "weight", TensorProto.FLOAT, [], [weights[name]]))
        nodes.append(helper.make_node("Mul", [p + OUTPUT, p + "weight"], [p + "weighted"], name=p + "mul"))
        terms.append(p + "weighted")
        for op in model.opset_import:
            opsets[op.domain] = max(opsets.get(op.domain, 0), op.version)
        ir_version = max(ir_version, model.ir_version)
    nodes.append(helper.make_node("Sum", terms, [OUTPUT], name="soft_vote"))
    graph = helper.make_graph(
        nodes,
        NAME,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", heads_mod.N_FEATURES])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", 20])],
        initializer=inits,
        value_info=value_info,
    )
    opset_import = [helper.make_opsetid(d, v) for d, v in sorted(opsets.items())]
    out = helper.make_model(
        graph,
        opset_imports=opset_import,
        functions=functions,
        producer_name="topicserve-training",
        doc_string="soft vote of " + ", ".join(f"{n} x {weights[n]:g}" for n in members),
    )
    if any(p.key == EXACT_EMBEDDINGS for m in members.values() for p in m.metadata_props):
        heads_mod.mark_exact_embeddings(out)  # a tree member makes the whole vote threshold-sensitive
    # the newest IR of the members, and at least what the merged opsets need
    out.ir_version = max(ir_version, helper.find_min_ir_version_for(opset_import))
    onnx.checker.check_model(out, full_check=True)
    return out


def weighted_sum(probas: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """What the composed graph must compute, in float64."""
    total: np.ndarray = np.sum(
        [weights[n] * np.asarray(p, dtype=np.float64) for n, p in probas.items()], axis=0
    )
    return total


# --------------------------------------------------------------------------- the build step


def fit_params(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """A head's recorded hyperparameters as its fit function takes them (rf's ONNX encoding is not one)."""
    return {k: v for k, v in hyperparameters.items() if k != "onnx_format"}


def validation_probabilities(
    s: Settings,
    name: str,
    hyperparameters: dict[str, Any],
    ds: Dataset,
    emb: Embeddings,
    emb_key: dict[str, str],
) -> np.ndarray:
    """``name`` refit with its chosen hyperparameters on the fit split, probabilities on validation
    (cached): out-of-sample, unlike the published head, which has seen the validation texts."""
    x, y = emb[("int8", "train")], ds.train.y
    tr_idx, val_idx, validation = heads_mod.validation_split(y)
    key = {
        "head": name,
        "hyperparameters": hyperparameters,
        "heads_code_version": heads_mod.HEADS_CODE_VERSION,
        "code_version": ENSEMBLE_CODE_VERSION,
        "embeddings": emb_key["int8/train"],
        "validation": validation,
        "quick": s.quick,
        "labels": ds.labels,
    }

    def run(outdir: Path) -> dict[str, Any]:
        model = heads_mod.FIT[name](x[tr_idx], y[tr_idx], fit_params(hyperparameters))
        proba = heads_mod._native_proba(model, x[val_idx])
        np.save(outdir / "validation.npy", proba)
        acc = float((proba.argmax(1) == y[val_idx]).mean())
        log.info("[ensemble] %s on the fit split: validation acc %.4f", name, acc)
        return {"validation_accuracy": round(acc, 4)}

    outdir, _ = cached_step("ensemble-validation", key, run, ["validation.npy"])
    proba: np.ndarray = np.load(outdir / "validation.npy")
    return proba


def build_ensemble(
    s: Settings,
    ds: Dataset,
    emb: Embeddings,
    heads: dict[str, Json],
    head_files: dict[Path, Path],
    encoder_sha: str,
) -> tuple[dict[str, Any], dict[Path, Path]]:
    """Weights on validation, composition, test metrics (cached). Returns the manifest entry and
    {published path: cached file}, like ``training.heads.build_heads``."""
    emb_key = heads_mod.embeddings_key(emb)
    y_val = ds.train.y[heads_mod.validation_split(ds.train.y)[1]]
    val = {n: validation_probabilities(s, n, heads[n]["hyperparameters"], ds, emb, emb_key) for n in MEMBERS}
    sources = {n: head_files[MODELS / "heads" / f"{n}.onnx"] for n in MEMBERS}
    key = {
        "code_version": ENSEMBLE_CODE_VERSION,
        "members": {n: heads[n]["sha256"] for n in MEMBERS},
        "validation_probabilities": {n: hashlib.sha256(v.tobytes()).hexdigest() for n, v in val.items()},
        "grid_step": GRID_STEP,
        "test_embeddings": {k: emb_key[k] for k in ("int8/test", "fp32/test")},
        "labels": ds.labels,
    }

    def run(outdir: Path) -> dict[str, Any]:
        weights, selection = choose_weights(val, y_val)
        used = {n: w for n, w in weights.items() if w > 0}  # a zero-weight member would cost for nothing
        log.info("[ensemble] weights %s: validation acc %.4f", weights, selection["accuracy"])
        path = outdir / f"{NAME}.onnx"
        model = compose({n: onnx.load(str(sources[n])) for n in used}, used)
        onnx.save(model, str(path))
        x_test, x_test32, y_test = emb[("int8", "test")], emb[("fp32", "test")], ds.test.y
        proba = heads_mod.onnx_proba(path, x_test)
        want = weighted_sum({n: heads_mod.onnx_proba(sources[n], x_test) for n in used}, used)
        diff = float(np.abs(proba - want).max())
        agreement = float((proba.argmax(1) == want.argmax(1)).mean())
        log.info("[ensemble] composed vs weighted sum of the members: max abs diff %.2e", diff)
        if diff > 1e-5:
            raise RuntimeError(f"the composed ensemble differs from its members' weighted sum by {diff}")
        pred = proba.argmax(1)
        return {
            "weights": weights,
            "members": list(used),
            "selection": selection,
            "agreement_with_native": round(agreement, 6),
            "max_abs_proba_diff": diff,
            "metrics": {
                "accuracy": round(float(accuracy_score(y_test, pred)), 4),
                "macro_f1": round(float(f1_score(y_test, pred, average="macro")), 4),
                "accuracy_fp32_embeddings": round(
                    float(accuracy_score(y_test, heads_mod.onnx_proba(path, x_test32).argmax(1))), 4
                ),
            },
            "export": {
                "composer": "training.ensemble.compose (onnx.compose.add_prefix per member, Mul, Sum)",
                "ir_version": model.ir_version,
                "opset_import": {op.domain or "ai.onnx": op.version for op in model.opset_import},
                "n_nodes": len(model.graph.node),
            },
        }

    cdir, res = cached_step(NAME, key, run, [f"{NAME}.onnx"])
    src, dst = cdir / f"{NAME}.onnx", MODELS / "heads" / f"{NAME}.onnx"
    best = max(MEMBERS, key=lambda n: (heads[n]["metrics"]["accuracy"], heads[n]["metrics"]["macro_f1"]))
    best_m = heads[best]["metrics"]
    gain = round(100 * (res["metrics"]["accuracy"] - best_m["accuracy"]), 2)
    log.info(
        "[ensemble] test acc %.4f macro-F1 %.4f vs best single head %s %.4f / %.4f: %+.2f points",
        res["metrics"]["accuracy"],
        res["metrics"]["macro_f1"],
        best,
        best_m["accuracy"],
        best_m["macro_f1"],
        gain,
    )
    entry = {
        "path": rel(dst),
        "sha256": sha256_file(src),
        "size_bytes": src.stat().st_size,
        "load_seconds": heads_mod.load_seconds(src),
        "format": heads_mod.FORMAT,
        "onnx_encoding": ENCODING,
        # "native" here: the weighted sum of the members' own ONNX outputs, computed in numpy
        "agreement_with_native": res["agreement_with_native"],
        "max_abs_proba_diff": res["max_abs_proba_diff"],
        "metrics": res["metrics"]
        | {
            "n_test": len(ds.test.y),
            "best_single_head": {
                "name": best,
                "accuracy": best_m["accuracy"],
                "macro_f1": best_m["macro_f1"],
            },
            "gain_points_vs_best_single": gain,
        },
        "hyperparameters": {
            "weights": res["weights"],
            "grid_step": GRID_STEP,
            "selected_on": "validation",
            "tie_break": "validation log loss",
            "members_fit_on": "fit split (validation held out), chosen hyperparameters of each head",
        },
        "validation_accuracy": res["selection"]["accuracy"],
        "selection": res["selection"],
        "export": res["export"],
        "members": {n: heads[n]["sha256"] for n in res["members"]},
        "trained_on": {"embeddings": "int8", "encoder_sha256": encoder_sha, "n_train": len(ds.train.y)},
    }
    return entry, {dst: src}
