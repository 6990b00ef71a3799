"""Assemble the encoder layer from ``make models`` output: ``build/layers/encoder-<variant>/``.

The layer holds the ONNX encoder and its tokenizer as the data files of a tiny Python package,
``topicserve_encoder``, under ``python/``. Lambda mounts layers at /opt and puts /opt/python on the import
path, so ``import topicserve_encoder`` finds the files on AWS and under the local executor alike, with no
path configured anywhere. ``encoder.json`` records the sha256 (the encoder version in every cache key) so
a cold start need not hash 22 MB.

It also carries every head the manifest lists as ``seed/<sha256>.onnx`` + ``seed/<sha256>.json`` (model,
labels): the heads the deploy registers and promotes, which a cold start then serves without fetching them
from the registry first (``topicserve.rollout.seed``; the deploy's ``ROUTING_SEED`` says which version each
one is). A head the registry's production does not match is still fetched and verified as before.

Usage: python -m infra.encoder_layer [--variant int8|fp32] [--manifest build/models/manifest.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any

from topicserve.catalogue import SERVED_ENCODER
from topicserve.rollout.seed import SEED_DIR

INIT = '''"""Data package of the encoder layer: model.onnx, tokenizer.json, encoder.json."""

from pathlib import Path

DIR = Path(__file__).parent
'''


def place(src: Path, dst: Path) -> None:
    """Hard-link when possible (no 90 MB copy), copy otherwise; replace whatever was there."""
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def build(manifest_path: Path, variant: str, out: Path) -> Path:
    manifest = json.loads(manifest_path.read_text())
    root = Path(__file__).resolve().parents[1]  # paths in the manifest are relative to the repo root
    entry = manifest["encoder"][variant]
    package = out / "python" / "topicserve_encoder"
    package.mkdir(parents=True, exist_ok=True)
    tokenizer = entry.get("tokenizer_path", str(Path(entry["path"]).parent / "tokenizer.json"))
    place(root / entry["path"], package / "model.onnx")
    place(root / tokenizer, package / "tokenizer.json")
    (package / "__init__.py").write_text(INIT)
    info = {
        "name": entry.get("name", "sentence-transformers/all-MiniLM-L6-v2"),
        "variant": variant,
        "sha256": entry["sha256"],
        "max_length": entry.get("max_length", 256),
        # the file is ONNX Runtime's optimised graph (saved by `make models`): sessions skip re-optimising
        "graph_optimization": entry.get("graph_optimization"),
        "quick": manifest.get("quick", False),
    }
    (package / "encoder.json").write_text(json.dumps(info, indent=2) + "\n")
    place_seeds(manifest, root, package / SEED_DIR)
    return package


def place_seeds(manifest: dict[str, Any], root: Path, folder: Path) -> None:
    """The manifest's heads, named by sha256 (the seed lookup's key); stale ones are removed."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for model, entry in manifest.get("heads", {}).items():
        sha = entry["sha256"]
        place(root / entry["path"], folder / f"{sha}.onnx")
        info = {"model": model, "labels": manifest.get("labels", [])}
        (folder / f"{sha}.json").write_text(json.dumps(info) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default=SERVED_ENCODER, choices=["int8", "fp32"])
    parser.add_argument("--manifest", type=Path, default=Path("build/models/manifest.json"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or Path("build/layers") / f"encoder-{args.variant}"
    package = build(args.manifest, args.variant, out)
    size = sum(f.stat().st_size for f in package.rglob("*") if f.is_file()) / 1e6
    print(f"encoder layer ({args.variant}): {package} ({size:.1f} MB)")


if __name__ == "__main__":
    main()
