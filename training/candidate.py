"""``python -m training.candidate``: train a new version of one head for a rollout, and register it.

It refits the head on the cached embeddings of the build in ``build/models`` (the same encoder, dataset,
subset and labels; nothing is re-encoded when the build's embedding cache is there), with the recorded
hyperparameters changed by ``--param``, exports it with the build's own exporter, measures its test
accuracy, and with ``--register`` records it in the stack's registry (``build/stack.json``) as the next
version, with lineage and, with ``--stage``, straight into shadow or canary. ``--permute-labels SEED``
trains on shuffled labels: a deliberately broken version, to watch a gate roll it back. ``--train-texts N``
fits on a stratified sample of N training texts (``--train-seed``): a slightly worse version, or with
nearly all of them a near-identical retrain. ``--with-feedback`` adds the texts labelled through
``POST /v1/feedback`` to the training set (``training.feedback``).

    python -m training.candidate logreg --param C=0.1 --register --stage shadow
    python -m training.candidate logreg --with-feedback --register --stage shadow
    python -m training.candidate logreg --train-texts 4000 --register --stage canary --weight 0.5
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from topicserve.registry.store import sha256_file
from training.common import REPO, Settings, code_revision, log, rel, setup_logging

if TYPE_CHECKING:
    from topicserve.encoder import Encoder
    from topicserve.registry import ModelVersion, Registry

MANIFEST = REPO / "build" / "models" / "manifest.json"
STACK_JSON = REPO / "build" / "stack.json"
OUT = REPO / "build" / "candidates"


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def train(
    name: str,
    params: dict[str, Any],
    *,
    permute_seed: int | None = None,
    feedback: dict[str, str] | None = None,
    train_texts: int | None = None,
    train_seed: int = 0,
) -> dict[str, Any]:
    """Fit, export and evaluate one candidate; returns its manifest-like entry. ``feedback`` (text ->
    label, :func:`training.feedback.archived_labels`) is added to the training set; ``train_texts`` fits
    on a stratified sample of that many of the build's training texts (drawn with ``train_seed``)."""
    from training import data as data_mod
    from training import embed
    from training.heads import EXPORT, FIT, export_rf, onnx_proba

    manifest = json.loads(MANIFEST.read_text())
    if name not in manifest["heads"] or name not in FIT:
        raise SystemExit(f"{name!r} is not a trainable head of this build: {sorted(FIT)}")
    s = Settings.from_env()
    ds = data_mod.load(s.data_home, bool(manifest["quick"]))
    enc_entry = manifest["encoder"]["int8"]
    encoder = build_encoder(manifest)
    arrays = {}
    for split in ("train", "test"):
        part = getattr(ds, split)
        arrays[split], _ = embed.embeddings(
            encoder, enc_entry["sha256"], split, part.texts, part.index, ds.subset, ds.pkz_sha256
        )
    y = ds.train.y
    subset = None
    if train_texts is not None:
        keep = train_sample(y, train_texts, train_seed)
        arrays["train"], y = arrays["train"][keep], y[keep]
        subset = {"n": len(keep), "of": len(ds.train.y), "seed": train_seed}
        log.info(
            "[%s] fitting on %d of the %d training texts (seed %d)",
            name,
            len(keep),
            len(ds.train.y),
            train_seed,
        )
    added = 0
    if feedback:
        from training.feedback import feedback_rows

        texts, labels = feedback_rows(feedback, manifest["labels"], ds.test.texts)
        if texts:
            arrays["train"] = np.vstack([arrays["train"], encoder.encode(texts)])
            y, added = np.concatenate([y, labels]), len(texts)
        log.info("[%s] %d labelled feedback texts added to the training set", name, added)
    if permute_seed is not None:
        y = np.random.default_rng(permute_seed).permutation(y)
    hyper = {**manifest["heads"][name].get("hyperparameters", {}), **params}
    log.info(
        "[%s] fitting a candidate with %s%s",
        name,
        hyper,
        " on PERMUTED labels" if permute_seed is not None else "",
    )
    model = FIT[name](arrays["train"], y, hyper)
    OUT.mkdir(parents=True, exist_ok=True)
    tag = "-".join(f"{k}{v}" for k, v in sorted(params.items())) or "refit"
    tag += f"-feedback{added}" if feedback else ""
    tag += f"-n{subset['n']}s{train_seed}" if subset else ""
    path = OUT / f"{name}-{tag}{'-permuted' if permute_seed is not None else ''}.onnx"
    if name == "rf":
        export_rf(model, path, hyper.get("onnx_format", "treeensemble"))
    else:
        EXPORT[name](model, path)
    pred = onnx_proba(path, arrays["test"]).argmax(1)
    accuracy = round(float((pred == ds.test.y).mean()), 4)
    log.info(
        "[%s] candidate test accuracy %.4f (production build: %s) -> %s",
        name,
        accuracy,
        manifest["heads"][name]["metrics"]["accuracy"],
        rel(path),
    )
    return {
        "path": path,
        "sha256": sha256_file(path),
        "hyperparameters": hyper,
        "metrics": {"accuracy": accuracy, "n_test": len(ds.test.y)},
        "labels": manifest["labels"],
        "dataset": manifest["dataset"],
        "encoder": {
            "name": "sentence-transformers/all-MiniLM-L6-v2",
            "variant": "int8",
            "sha256": enc_entry["sha256"],
        },
        "permuted_labels": permute_seed is not None,
        "feedback_texts": added,
        "train_subset": subset,
    }


def build_encoder(manifest: dict[str, Any] | None = None) -> Encoder:
    """The build's served encoder (INT8) as serving configures it: the heads were trained on its
    embeddings, and a caller embedding other texts (an offline check of served answers) gets the same."""
    from topicserve.encoder import Encoder

    manifest = manifest or json.loads(MANIFEST.read_text())
    s = Settings.from_env()
    enc_entry = manifest["encoder"]["int8"]
    return Encoder(
        REPO / enc_entry["path"],
        REPO / "build" / "models" / "encoder" / "tokenizer.json",
        max_length=enc_entry.get("max_length") or s.max_length,
        intra_op_threads=s.threads,
        pre_optimized=bool(enc_entry.get("graph_optimization")),
    )


def train_sample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted positions of a stratified sample of ``n`` of the labels ``y`` (each class keeps its share;
    nearly all of them: a random few left out, too few to stratify)."""
    from sklearn.model_selection import train_test_split

    if not isinstance(n, int) or isinstance(n, bool) or not len(set(y.tolist())) <= n <= len(y):
        raise ValueError(f"train_texts must be an int in [{len(set(y.tolist()))}, {len(y)}], got {n!r}")
    if n == len(y):
        return np.arange(len(y))
    if len(y) - n < len(set(y.tolist())):  # too few left out to stratify them: leave out random ones
        dropped = np.random.default_rng(seed).choice(len(y), len(y) - n, replace=False)
        return np.setdiff1d(np.arange(len(y)), dropped)
    keep, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
    return np.sort(keep)


def register(
    registry: Registry,
    entry: dict[str, Any],
    name: str,
    *,
    stage: str | None = None,
    weight: float | None = None,
    reason: str = "",
) -> ModelVersion:
    """Record the candidate as the next version of ``name`` (its parent: the newest version), and put it
    into ``stage`` when given."""
    from topicserve.registry import Lineage

    description = "candidate: " + ", ".join(f"{k}={v}" for k, v in entry["hyperparameters"].items())
    if entry["permuted_labels"]:
        description += " (PERMUTED LABELS: deliberately broken)"
    if entry.get("train_subset"):
        sub = entry["train_subset"]
        description += f" (on {sub['n']} of {sub['of']} training texts, seed {sub['seed']})"
    record = registry.register(
        name,
        entry["path"],
        format="onnx",
        metrics=entry["metrics"],
        hyperparameters=entry["hyperparameters"],
        labels=entry["labels"],
        lineage=Lineage(dataset=entry["dataset"], encoder=entry["encoder"], code_revision=code_revision()),
        description=description,
    )
    if stage:
        record = registry.promote(name, record.version, stage, weight=weight, reason=reason or description)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="head to retrain (logreg, rf, hgb, mlp)")
    parser.add_argument("--param", action="append", default=[], help="KEY=VALUE hyperparameter override")
    parser.add_argument(
        "--permute-labels", type=int, metavar="SEED", help="train on shuffled labels (broken)"
    )
    parser.add_argument(
        "--train-texts", type=int, metavar="N", help="fit on a stratified sample of N training texts"
    )
    parser.add_argument("--train-seed", type=int, default=0, help="the sample's seed (--train-texts)")
    parser.add_argument(
        "--with-feedback",
        action="store_true",
        help="add the texts labelled through POST /v1/feedback (the stack's archive) to the training set",
    )
    parser.add_argument("--register", action="store_true", help="register it in build/stack.json's registry")
    parser.add_argument(
        "--stage", choices=["shadow", "canary", "staging"], help="with --register: stage to enter"
    )
    parser.add_argument("--weight", type=float, help="canary traffic share")
    parser.add_argument("--reason", default="", help="recorded in the registry history")
    args = parser.parse_args(argv)
    setup_logging()
    params = dict(p.split("=", 1) for p in args.param)
    extra: dict[str, Any] = {}
    if args.with_feedback:
        from training.feedback import archived_labels

        extra["feedback"] = archived_labels(STACK_JSON)
    if args.train_texts is not None:
        extra |= {"train_texts": args.train_texts, "train_seed": args.train_seed}
    entry = train(
        args.name, {k: _value(v) for k, v in params.items()}, permute_seed=args.permute_labels, **extra
    )
    out: dict[str, Any] = {"path": rel(entry["path"]), "sha256": entry["sha256"], "metrics": entry["metrics"]}
    if args.register:
        from topicserve.errors import TopicServeError
        from topicserve_ops.registry_cli import open_registry

        try:
            registry = open_registry(STACK_JSON)
        except TopicServeError as exc:
            raise SystemExit(f"error: {exc} (or `make deploy` first: it writes {rel(STACK_JSON)})") from exc
        record = register(
            registry, entry, args.name, stage=args.stage, weight=args.weight, reason=args.reason
        )
        out["registered"] = record.to_dict()
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
