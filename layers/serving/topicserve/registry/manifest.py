"""Register what ``make models`` built (``build/models/manifest.json``) in the registry, idempotently.

Deploys call this on every run: an artifact whose sha256 is already registered under its name is not
registered again, and a name with no production version gets its newest version promoted, so a fresh
stack serves the freshly built models while a stack whose operator promoted something else keeps it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from topicserve.catalogue import SERVED_ENCODER
from topicserve.errors import RegistryError
from topicserve.registry.model import Lineage, ModelVersion, Stage
from topicserve.registry.store import Registry

ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def encoder_model_name(variant: str) -> str:
    return f"encoder-{variant}"


def reference_model_name(variant: str) -> str:
    """The monitoring reference (topicserve.monitoring.reference) built with that encoder variant."""
    return f"reference-{variant}"


def load_manifest(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        manifest: dict[str, Any] = json.load(handle)
    return manifest


def register_manifest(
    registry: Registry,
    manifest: dict[str, Any],
    *,
    root: str | Path = ".",
    promote_new: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, ModelVersion]:
    """Register every encoder variant and head of a manifest; returns the registry record of each.

    ``promote_new`` promotes a newly registered version to production even when another one is serving
    (what ``make deploy`` does after ``make models`` built new heads); otherwise only names with no
    production version are promoted.
    """
    root = Path(root)
    dataset = manifest.get("dataset", {})
    revision = manifest.get("code_revision", "unknown")
    served = manifest["encoder"][SERVED_ENCODER]
    encoder_lineage = {"name": ENCODER_NAME, "variant": SERVED_ENCODER, "sha256": served["sha256"]}
    records: dict[str, ModelVersion] = {}

    for variant, entry in manifest["encoder"].items():
        records[encoder_model_name(variant)] = _ensure(
            registry,
            encoder_model_name(variant),
            root / entry["path"],
            sha256=entry["sha256"],
            format="onnx",
            metrics={"fidelity": entry.get("fidelity", {}), "load_seconds": entry.get("load_seconds")},
            hyperparameters={"max_length": entry.get("max_length"), "variant": variant},
            labels=[],
            lineage=Lineage(
                dataset={},
                encoder={"name": ENCODER_NAME, "variant": variant, "sha256": entry["sha256"]},
                code_revision=revision,
            ),
            quick=manifest.get("quick", False),
            promote_new=promote_new,
            log=log,
        )
    for head, entry in manifest["heads"].items():
        records[head] = _ensure(
            registry,
            head,
            root / entry["path"],
            sha256=entry["sha256"],
            format=entry.get("format", "onnx"),
            metrics=head_metrics(entry, dataset),
            hyperparameters=entry.get("hyperparameters", {}),
            labels=manifest.get("labels", []),
            lineage=Lineage(
                dataset=dataset,
                encoder=encoder_lineage,
                code_revision=revision,
                members=_members(head, entry.get("members", {}), records),
            ),
            quick=manifest.get("quick", False),
            promote_new=promote_new,
            log=log,
        )
    if "reference" in manifest:  # the monitoring reference: an artifact of the encoder it was embedded with
        entry = manifest["reference"]
        records[reference_model_name(entry["variant"])] = _ensure(
            registry,
            reference_model_name(entry["variant"]),
            root / entry["path"],
            sha256=entry["sha256"],
            format=entry.get("format", "npz"),
            metrics={
                "n_embeddings": entry.get("n_embeddings"),
                "mean_confidence": entry.get("mean_confidence"),
            },
            hyperparameters={"heads": entry.get("heads", [])},
            labels=manifest.get("labels", []),
            lineage=Lineage(dataset=dataset, encoder=encoder_lineage, code_revision=revision),
            quick=manifest.get("quick", False),
            promote_new=promote_new,
            log=log,
        )
    return records


def head_metrics(entry: dict[str, Any], dataset: dict[str, Any]) -> dict[str, Any]:
    """A head's registry metrics: its test metrics, its agreement with the native model, and ``n_test``,
    the number of test texts its accuracy was measured on (the build records it; a manifest from before
    takes the dataset's), so the live-accuracy alarm compares with the lower end of the accuracy's
    interval at that count, not with the point value (:mod:`topicserve.feedback.quality`)."""
    metrics = {**entry.get("metrics", {}), "agreement_with_native": entry.get("agreement_with_native")}
    n_test = metrics.get("n_test", dataset.get("n_test"))
    if isinstance(n_test, int) and not isinstance(n_test, bool) and n_test > 0:
        metrics["n_test"] = n_test
    return metrics


def _members(head: str, members: dict[str, str], records: dict[str, ModelVersion]) -> dict[str, Any]:
    """An ensemble's lineage: the registered version of each member, which the manifest lists first."""
    out: dict[str, Any] = {}
    for member, sha256 in members.items():
        record = records.get(member)
        if record is None:
            raise RegistryError(f"{head}: member {member!r} is not registered before it in the manifest")
        if record.sha256 != sha256:
            raise RegistryError(
                f"{head}: member {member!r} was built from sha256 {sha256[:12]}, the registered one is "
                f"{record.sha256[:12]}"
            )
        out[member] = {"version": record.version, "sha256": record.sha256}
    return out


def _ensure(
    registry: Registry,
    name: str,
    path: Path,
    *,
    sha256: str,
    quick: bool,
    promote_new: bool,
    log: Callable[[str], None],
    **fields: Any,
) -> ModelVersion:
    existing = registry.find_by_sha256(name, sha256)
    if existing is None:
        description = "QUICK build (subset): for tests only" if quick else "full build"
        existing = registry.register(name, path, description=description, **fields)
        log(f"registered {name} v{existing.version} ({existing.size_bytes / 1e6:.1f} MB)")
        if promote_new:
            existing = registry.promote(name, existing.version, Stage.PRODUCTION)
    try:
        registry.resolve(name, Stage.PRODUCTION)
    except RegistryError:  # no production version yet: this one becomes it
        existing = registry.promote(name, existing.version, Stage.PRODUCTION)
        log(f"promoted {name} v{existing.version} to production")
    return existing
