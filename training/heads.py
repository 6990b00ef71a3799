"""Train the four heads on int8 embeddings, export each to ONNX with the common interface, evaluate.

Common interface (so serving has one generic ``topicserve.heads.Head``): input ``embeddings`` float32
[N, 384], output ``probabilities`` float32 [N, 20].

Protocol: hyperparameters are chosen on a stratified, seeded validation split carved from train (never on
test); the chosen configuration is then refit on the full train set. Test metrics are computed with the
exported ONNX graph (what serving runs), on int8 embeddings (what serving feeds) and, for reference, on
fp32 embeddings. ONNX-vs-native agreement is the share of test rows where both predict the same class.
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, Protocol, TypeAlias, TypedDict

import numpy as np
import onnx
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from topicserve.heads import EXACT_EMBEDDINGS
from training import trees
from training.common import MODELS, SEED, Embeddings, Json, Settings, cached_step, log, rel, sha256_file
from training.trees import Sklearn

if TYPE_CHECKING:
    import torch

    from training.data import Dataset

VAL_FRACTION = 0.15
N_FEATURES = 384
AGREEMENT_GOAL = 0.995
RF_MAX_BYTES = 50_000_000
RF_MAX_LOAD_S = 1.0
# Part of every head's cache key: bump when training or export code changes in a way that alters artifacts
# (the key otherwise names only data, embeddings and hyperparameters).
HEADS_CODE_VERSION = 3  # 3: tree heads carry topicserve.exact_embeddings

#: a head's hyperparameters, as its fit function takes them and the manifest records them
Params: TypeAlias = dict[str, Any]
#: an onnxruntime InferenceSession (onnxruntime ships no type information)
OrtSession: TypeAlias = Any


class Classifier(Protocol):
    """A fitted head before export: a scikit-learn estimator or the MLP."""

    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...


class Choice(TypedDict):
    """A row of a head's validation search (the manifest's "selection"), or the recorded choice."""

    params: Params
    val_accuracy: float | None
    fit_seconds: NotRequired[float]
    formats: NotRequired[dict[str, dict[str, Any]]]  # rf: each ONNX encoding's size, load time, nodes
    fits_limits: NotRequired[bool]  # rf: some encoding fits RF_MAX_BYTES and RF_MAX_LOAD_S
    onnx_format: NotRequired[str | None]  # rf: the encoding chosen


class Trained(TypedDict):
    """What ``_train_one`` gives back: the refit head, its ONNX file, and how it was chosen."""

    model: Classifier
    path: Path
    selection: list[Choice]
    chosen: Choice
    export: Json
    refit_seconds: float


# --------------------------------------------------------------------------- ONNX helpers


def onnx_session(path: Path) -> OrtSession:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def onnx_proba(path: Path, x: np.ndarray) -> np.ndarray:
    proba: np.ndarray = onnx_session(path).run(["probabilities"], {"embeddings": x.astype(np.float32)})[0]
    return proba


def load_seconds(path: Path, repeats: int = 3) -> float:
    """Median time of constructing the serving Head (read + sha256 + session) -- what a cold start pays."""
    from topicserve.heads import Head

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        Head(path, name="probe")
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 4)


def trim_skl2onnx(model: onnx.ModelProto, prob_output: str) -> onnx.ModelProto:
    """Keep only the probability output of a skl2onnx graph, renamed ``probabilities``, and prune nodes."""
    g = model.graph
    for node in g.node:
        node.output[:] = ["probabilities" if o == prob_output else o for o in node.output]
    keep_out = [o for o in g.output if o.name == prob_output]
    if not keep_out:
        raise ValueError(f"{prob_output!r} not among outputs {[o.name for o in g.output]}")
    del g.output[:]
    g.output.append(onnx.helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, ["N", 20]))
    needed = {"probabilities"}
    kept = []
    for node in reversed(g.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
    del g.node[:]
    g.node.extend(reversed(kept))
    inits = [i for i in g.initializer if i.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    onnx.checker.check_model(model)
    return model


# --------------------------------------------------------------------------- the four heads


def fit_logreg(x: np.ndarray, y: np.ndarray, params: Params) -> Sklearn:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=params["C"], max_iter=3000, random_state=SEED).fit(x, y)


def export_logreg(model: Sklearn, path: Path) -> Json:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        model,
        initial_types=[("embeddings", FloatTensorType([None, N_FEATURES]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    onnx.save(trim_skl2onnx(onx, "probabilities"), str(path))
    return {"converter": "skl2onnx (zipmap off, label output trimmed)"}


def fit_rf(x: np.ndarray, y: np.ndarray, params: Params) -> Sklearn:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_jobs=-1, random_state=SEED, **params).fit(x, y)


RF_FORMATS = {
    "treeensemble": trees.random_forest_to_onnx,  # ai.onnx.ml TreeEnsemble v5
    "gather": trees.random_forest_to_onnx_gather,  # flat arrays walked with Gather ops
}


def mark_exact_embeddings(model: onnx.ModelProto) -> onnx.ModelProto:
    """Say in the artifact that the head compares features with thresholds, so serving feeds it fresh
    embeddings and never a cache record's 16-bit one (``topicserve.heads.EXACT_EMBEDDINGS``): a 1e-5 move
    crosses some threshold for ~0.2-3 % of texts, and a tree then answers another leaf."""
    onnx.helper.set_model_props(model, {EXACT_EMBEDDINGS: "true"})
    return model


def export_rf(model: Sklearn, path: Path, fmt: str = "treeensemble") -> Json:
    onx, stats = RF_FORMATS[fmt](model, N_FEATURES)
    onnx.save(mark_exact_embeddings(onx), str(path))
    return {"converter": f"training.trees ({fmt})", "onnx_format": fmt, **stats}


def fit_hgb(x: np.ndarray, y: np.ndarray, params: Params) -> Sklearn:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.multiclass import OneVsRestClassifier

    base = HistGradientBoostingClassifier(
        early_stopping=True, validation_fraction=0.1, n_iter_no_change=10, random_state=SEED, **params
    )
    return OneVsRestClassifier(base, n_jobs=1).fit(x, y)


def export_hgb(model: Sklearn, path: Path) -> Json:
    onx, stats = trees.hgb_ovr_to_onnx(model, N_FEATURES)
    onnx.save(mark_exact_embeddings(onx), str(path))
    iters = [int(e.n_iter_) for e in model.estimators_]
    return {
        "converter": "training.trees (ai.onnx.ml TreeEnsemble v5 + sigmoid + normalise)",
        "n_iter_per_class": iters,
        **stats,
    }


class MLP:
    """A small seeded PyTorch MLP (384-256-20) with sklearn-like fit / predict_proba."""

    def __init__(self, params: Params) -> None:
        self.params = params

    def _net(self) -> torch.nn.Sequential:
        import torch

        torch.manual_seed(SEED)
        p = self.params
        return torch.nn.Sequential(
            torch.nn.Linear(N_FEATURES, p["hidden"]),
            torch.nn.ReLU(),
            torch.nn.Dropout(p["dropout"]),
            torch.nn.Linear(p["hidden"], 20),
        )

    def fit(
        self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray | None = None, y_val: np.ndarray | None = None
    ) -> MLP:
        """Train for ``epochs``; with a validation set, remember the best epoch (for the refit)."""
        import torch

        p = self.params
        torch.manual_seed(SEED)
        net = self._net()
        opt = torch.optim.AdamW(net.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        gen = torch.Generator().manual_seed(SEED)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=p.get("label_smoothing", 0.0))
        self.history: list[float] = []
        best: tuple[float, int, dict[str, torch.Tensor] | None] = (-1.0, 0, None)
        for epoch in range(1, p["epochs"] + 1):
            net.train()
            perm = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(perm), p["batch_size"]):
                idx = perm[i : i + p["batch_size"]]
                opt.zero_grad()
                loss_fn(net(xt[idx]), yt[idx]).backward()
                opt.step()
            if x_val is not None:
                self.net = net
                acc = float((self.predict_proba(x_val).argmax(1) == y_val).mean())
                self.history.append(acc)
                if acc > best[0]:
                    best = (acc, epoch, {k: v.clone() for k, v in net.state_dict().items()})
        if x_val is not None:
            self.best_epoch, self.best_val = best[1], best[0]
            assert best[2] is not None, "an epoch was scored on validation"
            net.load_state_dict(best[2])
        self.net = net.eval()
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        import torch

        self.net.eval()
        with torch.no_grad():
            proba: np.ndarray = torch.softmax(
                self.net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))), 1
            ).numpy()
        return proba


def fit_mlp(
    x: np.ndarray,
    y: np.ndarray,
    params: Params,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
) -> MLP:
    return MLP(params).fit(x, y, x_val, y_val)


def export_mlp(model: MLP, path: Path) -> Json:
    import torch

    net = torch.nn.Sequential(model.net, torch.nn.Softmax(dim=1)).eval()
    with torch.no_grad():
        torch.onnx.export(
            net,
            (torch.zeros(2, N_FEATURES),),
            str(path),
            input_names=["embeddings"],
            output_names=["probabilities"],
            dynamic_axes={"embeddings": {0: "N"}, "probabilities": {0: "N"}},
            opset_version=17,
            dynamo=False,
        )
    return {"converter": "torch.onnx.export (dynamo=False, opset 17, softmax in graph)"}


# --------------------------------------------------------------------------- search spaces


#: What the full validation search (TUNE=1, the grids below) chose; TUNE=0 fits exactly these on the full
#: train set without searching again (same seeds, so the same models): `make demo` uses it to stay fast.
#: Update it when a search chooses differently (the manifest's "selection" tables show the search).
CHOSEN: dict[str, Params] = {
    "logreg": {"C": 1.0},
    "rf": {"n_estimators": 300, "max_features": "sqrt"},
    "hgb": {"learning_rate": 0.1, "max_iter": 300, "max_leaf_nodes": 15},
    "mlp": {
        "hidden": 512,
        "dropout": 0.5,
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "batch_size": 128,
        "label_smoothing": 0.1,
        "epochs": 54,
    },
}


def grids(quick: bool, tune: bool = True) -> dict[str, list[Params]]:
    if not tune and not quick:
        return {name: [params] for name, params in CHOSEN.items()}
    mlp_base = {
        "hidden": 256,
        "dropout": 0.3,
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "batch_size": 128,
        "label_smoothing": 0.1,
        "epochs": 25 if quick else 60,
    }
    if quick:
        return {
            "logreg": [{"C": c} for c in (1.0, 4.0)],
            "rf": [{"n_estimators": 60, "max_features": "sqrt"}],
            "hgb": [{"learning_rate": 0.2, "max_iter": 30, "max_leaf_nodes": 15}],
            "mlp": [mlp_base],
        }
    return {
        "logreg": [{"C": c} for c in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)],
        # RF variants: the size / accuracy / load-time trade-off table of docs/MODELS.md
        "rf": [
            {"n_estimators": 300, "max_features": "sqrt"},
            {"n_estimators": 300, "max_features": "sqrt", "max_samples": 0.5},
            {"n_estimators": 500, "max_features": "sqrt", "max_samples": 0.5},
            {"n_estimators": 150, "max_features": "sqrt"},
            {"n_estimators": 300, "max_features": "sqrt", "min_samples_leaf": 3},
        ],
        "hgb": [{"learning_rate": 0.1, "max_iter": 300, "max_leaf_nodes": 15}],
        "mlp": [mlp_base, mlp_base | {"hidden": 512, "dropout": 0.5}],
    }


FIT: dict[str, Callable[[np.ndarray, np.ndarray, Params], Classifier]] = {
    "logreg": fit_logreg,
    "rf": fit_rf,
    "hgb": fit_hgb,
    "mlp": fit_mlp,
}
#: each takes what its FIT gives (the MLP, or a scikit-learn estimator)
EXPORT: dict[str, Callable[[Any, Path], Json]] = {
    "logreg": export_logreg,
    "rf": export_rf,
    "hgb": export_hgb,
    "mlp": export_mlp,
}
FORMAT = "onnx"  # every head: one ONNX graph with the common interface; details in "onnx_encoding"
ENCODING = {
    "logreg": "skl2onnx LogisticRegression (zipmap off, label output trimmed)",
    "rf": "see hyperparameters.onnx_format",
    "hgb": "ai.onnx.ml TreeEnsemble v5 + Add/Sigmoid/normalise (training/trees.py)",
    "mlp": "torch.onnx.export MLP + Softmax",
}


def _native_proba(model: Classifier, x: np.ndarray) -> np.ndarray:
    return model.predict_proba(x.astype(np.float32))


def _train_one(
    name: str,
    grid: list[Params],
    xtr: np.ndarray,
    ytr: np.ndarray,
    xv: np.ndarray,
    yv: np.ndarray,
    quick: bool,
    outdir: Path,
    tune: bool = True,
) -> Trained:
    """Select on validation, refit on full train (xtr+xv), export to ``outdir/<name>.onnx``.

    With ``tune`` off the single recorded choice is refit directly: no fit on the fit split, no
    validation score (recorded as None), the same final model.
    """
    table: list[Choice] = []
    best: Choice | None = None if tune else {"params": grid[0], "val_accuracy": None}
    for params in grid if tune else []:
        t0 = time.perf_counter()
        model: Classifier
        if name == "mlp":
            mlp = fit_mlp(xtr, ytr, params, xv, yv)
            params = params | {"epochs": mlp.best_epoch}
            model = mlp
        else:
            model = FIT[name](xtr, ytr, params)
        fit_s = time.perf_counter() - t0
        val_acc = float((_native_proba(model, xv).argmax(1) == yv).mean())
        row: Choice = {"params": params, "val_accuracy": round(val_acc, 4), "fit_seconds": round(fit_s, 1)}
        if name == "rf":  # size and load time are part of the RF choice, for each ONNX encoding
            formats: dict[str, dict[str, Any]] = {}
            row["formats"] = formats
            for fmt in RF_FORMATS:
                with tempfile.TemporaryDirectory() as tmp:
                    p = Path(tmp) / "rf.onnx"
                    try:
                        stats = export_rf(model, p, fmt)
                    except trees.NotSuitableError as exc:
                        formats[fmt] = {"not_applicable": str(exc), "fits_limits": False}
                        log.info("[rf] %s as %s: not applicable (%s)", params, fmt, exc)
                        continue
                    size, load = p.stat().st_size, load_seconds(p)
                formats[fmt] = {
                    "size_bytes": size,
                    "load_seconds": load,
                    "n_nodes": stats["n_nodes"],
                    "fits_limits": size <= RF_MAX_BYTES and load <= RF_MAX_LOAD_S,
                }
                log.info("[rf] %s as %s: %.1f MB, load %.3f s", params, fmt, size / 1e6, load)
            ok = [f for f, v in formats.items() if v["fits_limits"]]
            row["fits_limits"] = bool(ok)
            # TreeEnsemble is the standard tree operator (and faster per call): prefer it when it fits
            row["onnx_format"] = ok[0] if ok else None
        log.info("[%s] %s -> val acc %.4f (fit %.1f s)", name, params, val_acc, fit_s)
        table.append(row)
        eligible = name != "rf" or row["fits_limits"] or quick
        best_acc = None if best is None else best["val_accuracy"]  # a float in a search
        if eligible and (best_acc is None or val_acc > best_acc):
            best = row
        del model
    if best is None:
        raise RuntimeError(f"no {name} variant fits the size/load limits")
    xall, yall = np.concatenate([xtr, xv]), np.concatenate([ytr, yv])
    log.info("[%s] refit on full train with %s", name, best["params"])
    t0 = time.perf_counter()
    refit = FIT[name](xall, yall, best["params"])
    refit_s = time.perf_counter() - t0
    path = outdir / f"{name}.onnx"
    if name == "rf":
        # the refit forest is ~15% larger than the one measured on the fit split: re-check the limits (and
        # applicability) and fall back to the other encoding if needed
        first = best.get("onnx_format") or "treeensemble"
        for fmt in [first, *(f for f in RF_FORMATS if f != first)]:
            try:
                export_info = export_rf(refit, path, fmt)
            except trees.NotSuitableError as exc:
                log.warning("[rf] refit forest cannot be encoded as %s (%s)", fmt, exc)
                continue
            if quick or (path.stat().st_size <= RF_MAX_BYTES and load_seconds(path) <= RF_MAX_LOAD_S):
                break
            log.warning("[rf] refit forest as %s misses the size/load limits", fmt)
        best = {**best, "params": best["params"] | {"onnx_format": fmt}}
    else:
        export_info = EXPORT[name](refit, path)
    return {
        "model": refit,
        "path": path,
        "selection": table,
        "chosen": best,
        "export": export_info,
        "refit_seconds": round(refit_s, 1),
    }


def validation_split(y_train: np.ndarray) -> tuple[np.ndarray, np.ndarray, Json]:
    """(fit indices, validation indices, protocol) of train: the one split every choice is made on (the
    heads' hyperparameters here, the ensemble's weights in training/ensemble.py)."""
    idx = np.arange(len(y_train))
    tr_idx, val_idx = train_test_split(idx, test_size=VAL_FRACTION, stratify=y_train, random_state=SEED)
    validation = {
        "fraction": VAL_FRACTION,
        "stratified": True,
        "seed": SEED,
        "n_fit": len(tr_idx),
        "n_validation": len(val_idx),
        "refit_on_full_train": True,
    }
    return tr_idx, val_idx, validation


def embeddings_key(emb: Embeddings) -> dict[str, str]:
    """sha256 of each embeddings array, ``"<variant>/<split>"`` -> hex: the data part of a cache key."""
    return {f"{a}/{b}": hashlib.sha256(v.tobytes()).hexdigest() for (a, b), v in emb.items()}


def build_heads(
    s: Settings, ds: Dataset, emb: Embeddings, names: list[str], encoder_sha: str
) -> tuple[dict[str, Json], Json, dict[Path, Path]]:
    """Train/export/evaluate each head (cached). Returns manifest entries, the validation protocol and
    {published path: cached file} for the caller to install together with the manifest."""
    x_train, y_train = emb[("int8", "train")], ds.train.y
    x_test, y_test = emb[("int8", "test")], ds.test.y
    x_test32 = emb[("fp32", "test")]
    tr_idx, val_idx, validation = validation_split(y_train)
    all_grids = grids(s.quick, s.tune)
    emb_key = embeddings_key(emb)
    out: dict[str, Json] = {}
    files: dict[Path, Path] = {}
    for name in names:
        key = {
            "head": name,
            "code_version": HEADS_CODE_VERSION,
            "grid": all_grids[name],
            "embeddings": emb_key,
            "quick": s.quick,
            "tune": s.tune,
            "validation": validation,
            "encoder_sha256": encoder_sha,
            "labels": ds.labels,
        }

        def run(outdir: Path, name: str = name) -> Json:
            r = _train_one(
                name,
                all_grids[name],
                x_train[tr_idx],
                y_train[tr_idx],
                x_train[val_idx],
                y_train[val_idx],
                s.quick,
                outdir,
                s.tune,
            )
            native = _native_proba(r["model"], x_test)
            proba = onnx_proba(r["path"], x_test)
            proba32 = onnx_proba(r["path"], x_test32)
            pred = proba.argmax(1)
            agreement = float((pred == native.argmax(1)).mean())
            res: Json = {
                "hyperparameters": r["chosen"]["params"],
                "selection": r["selection"],
                "validation_accuracy": r["chosen"]["val_accuracy"],
                "export": r["export"],
                "refit_seconds": r["refit_seconds"],
                "agreement_with_native": round(agreement, 6),
                "max_abs_proba_diff": float(np.abs(proba - native).max()),
                "metrics": {
                    "accuracy": round(float(accuracy_score(y_test, pred)), 4),
                    "macro_f1": round(float(f1_score(y_test, pred, average="macro")), 4),
                    "accuracy_fp32_embeddings": round(float(accuracy_score(y_test, proba32.argmax(1))), 4),
                    "accuracy_native": round(float(accuracy_score(y_test, native.argmax(1))), 4),
                },
            }
            log.info(
                "[%s] test acc %.4f macro-F1 %.4f fp32-emb acc %.4f agreement %.4f",
                name,
                res["metrics"]["accuracy"],
                res["metrics"]["macro_f1"],
                res["metrics"]["accuracy_fp32_embeddings"],
                agreement,
            )
            if agreement < AGREEMENT_GOAL:
                raise RuntimeError(f"{name}: ONNX agrees with the native model on only {agreement:.4f}")
            return res

        cdir, res = cached_step(f"head-{name}", key, run, [f"{name}.onnx"])
        dst, src = MODELS / "heads" / f"{name}.onnx", cdir / f"{name}.onnx"
        files[dst] = src
        out[name] = {
            "path": rel(dst),
            "sha256": sha256_file(src),
            "size_bytes": src.stat().st_size,
            "load_seconds": load_seconds(src),
            "format": FORMAT,
            "onnx_encoding": res["export"].get("onnx_format", ENCODING[name])
            if name == "rf"
            else ENCODING[name],
            "agreement_with_native": res["agreement_with_native"],
            # n_test beside the (cached) metrics: the live-accuracy alarm's reference interval needs it
            "metrics": {**res["metrics"], "n_test": len(y_test)},
            "hyperparameters": res["hyperparameters"],
            "validation_accuracy": res["validation_accuracy"],
            "selection": res["selection"],
            "export": res["export"],
            "trained_on": {"embeddings": "int8", "encoder_sha256": encoder_sha, "n_train": len(y_train)},
        }
    return out, validation, files
