"""Build the OCI images without a Docker daemon: ``make images`` (CPU) and ``GPU=1 make images`` (+ GPU).

    python -m containers.build [--variant cpu|gpu ...]  ->  build/images/topicserve-<variant>.oci.tar

The product's images only: the benchmark's PyTorch peer (``naive``) is a variant the benchmarks define and
build with :func:`build_images` (bench/naive/package.py), so building the product never imports them.

Steps, each cached under ``build/images/`` so a second run only redoes what changed:

1. the container tools (buildah, debootstrap) from Debian's packages when missing (apt, as root), else a
   message naming what to install;
2. the base image: no registry is reachable here, so Debian trixie (Python 3.13, the Lambda runtime's
   version) made by ``debootstrap --variant=minbase`` and committed to buildah's storage as
   ``localhost/topicserve-base:trixie``; on AWS the Containerfile's ``BASE_IMAGE`` is the Lambda Python 3.13
   image (CPU) or an NVIDIA CUDA runtime image (GPU) instead;
3. the context: the pinned runtime dependencies as cp313 manylinux wheels installed by the host's pip
   (``--target``, as ``sam build`` does for the layer), the serving library, the encoder layer's package and
   the predict handler: the same code as the zip package; the GPU image adds the bulk worker
   (``containers/worker/topicserve_worker``, its entrypoint);
4. ``buildah bud`` (vfs storage, chroot isolation: the flags DESIGN.md section 5 found to work here), then
   ``buildah push`` to an OCI archive, which the local executor runs and ECR would take on AWS.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "build" / "images"
CONTAINERFILE = REPO / "containers" / "Containerfile"
LIBRARY = REPO / "layers" / "serving" / "topicserve"
WORKER = REPO / "containers" / "worker" / "topicserve_worker"
STORAGE = ["--storage-driver", "vfs", "--root", str(OUT / "storage"), "--runroot", str(OUT / "run")]


@dataclass(frozen=True)
class Variant:
    """One image: its Debian base (for its Python), the Containerfile stage, and how its context is made.

    ``stage_context`` None: the serving library's context (:func:`context`). Otherwise a variant defined
    elsewhere (the benchmarks' peer) stages ``python/`` and ``task/`` itself from what it brings, and pip
    adds only the runtime client; ``sources`` lists its files, so a change to them rebuilds the image."""

    suite: str
    python: str  # the cp tag pip installs wheels for
    target: str  # the Containerfile stage
    what: str
    stage_context: Callable[[Path, Path], None] | None = field(default=None, compare=False)
    sources: Callable[[], list[Path]] | None = field(default=None, compare=False)


VARIANTS = {
    "cpu": Variant("trixie", "3.13", "cpu", "the serving library as a Lambda image (predict function)"),
    "gpu": Variant("trixie", "3.13", "gpu", "the bulk worker (onnxruntime-gpu: fp16 on CUDA, else the CPU)"),
}
DEBIAN_MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
TOOLS = {"buildah": "buildah", "debootstrap": "debootstrap"}  # command -> Debian package
#: manylinux tags the base's glibc takes (trixie 2.41, bookworm 2.36); pip matches --platform literally, and
#: e.g. the CUDA wheels are tagged manylinux_2_27 only
PLATFORMS = ("manylinux2014_x86_64", *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 35)))
#: what the image needs beyond the layer's requirements: the runtime client and the SDK Lambda's base has
RUNTIME_PINS = ("awslambdaric==4.2.2", "boto3==1.42.72")
#: the GPU variant swaps onnxruntime for its CUDA 13 build (CUDA and cuDNN libraries come as wheels)
GPU_ONNXRUNTIME = "onnxruntime-gpu[cuda,cudnn]==1.31.1"
#: files of a Debian rootfs no program in the image reads
SLIM = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/locale",
    "usr/share/info",
)


def say(message: str) -> None:
    print(f"==> images: {message}", flush=True)


def run(
    *command: str, env: Mapping[str, str] | None = None, stdout: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=True, text=True, env=env, stdout=stdout)


def buildah(*args: str, capture: bool = False, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BUILDAH_ISOLATION": "chroot", "STORAGE_DRIVER": "vfs"}
    return subprocess.run(
        ["buildah", *STORAGE, *args], env=env, capture_output=capture, text=True, check=check
    )


def ensure_tools() -> None:
    """Install buildah and debootstrap from Debian's packages where they are missing (15 s)."""
    missing = [pkg for cmd, pkg in TOOLS.items() if shutil.which(cmd) is None]
    if not missing:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say(f"installing {' '.join(missing)} (apt)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            *missing,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        return
    sys.exit(
        f"images: {', '.join(missing)} not found. Install them (Debian/Ubuntu: `sudo apt-get install "
        f"{' '.join(missing)}`; Fedora: `sudo dnf install {' '.join(missing)}`) and run `make images` again."
    )


def _has_image(tag: str) -> bool:
    return buildah("inspect", tag, capture=True, check=False).returncode == 0


def base_image(suite: str) -> str:
    """Debian ``suite`` minbase + python3 as a buildah image, made once (about 40 s) and kept in the
    storage: trixie has Python 3.13 (the Lambda runtime's), bookworm 3.11 (the naive peer's torch wheel)."""
    tag = f"localhost/topicserve-base:{suite}"
    if _has_image(tag):
        return tag
    rootfs = OUT / "base" / f"{suite}-rootfs"
    archive = OUT / "base" / f"{suite}.tar"
    if not archive.exists():
        if rootfs.exists():
            shutil.rmtree(rootfs)
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        say(f"base: debootstrap {suite} (minbase + python3) from {DEBIAN_MIRROR}")
        started = time.monotonic()
        run(
            "debootstrap",
            "--variant=minbase",
            "--include=python3,ca-certificates",
            suite,
            str(rootfs),
            DEBIAN_MIRROR,
            stdout=subprocess.DEVNULL,
        )
        for rel in SLIM:
            shutil.rmtree(rootfs / rel, ignore_errors=True)
        for mount_point in ("proc", "sys", "dev"):  # mounted by whoever runs the image
            shutil.rmtree(rootfs / mount_point, ignore_errors=True)
            (rootfs / mount_point).mkdir()
        with tarfile.open(archive.with_suffix(".part"), "w") as tar:
            tar.add(rootfs, arcname=".")
        archive.with_suffix(".part").rename(archive)
        shutil.rmtree(rootfs)
        say(f"base: {archive.stat().st_size / 1e6:.0f} MB in {time.monotonic() - started:.0f} s")
    container = buildah("from", "scratch", capture=True).stdout.strip()
    try:
        buildah("add", container, str(archive), "/")
        buildah(
            "config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", container
        )
        buildah("commit", "--quiet", container, tag)
    finally:
        buildah("rm", container)
    return tag


def requirements(variant: str, spec: Variant) -> list[str]:
    """The serving layer's pins (the zip package's), plus the runtime client; onnxruntime-gpu for the GPU.
    A variant that stages its own context brings its own closure and needs only the runtime client."""
    if spec.stage_context is not None:
        return [RUNTIME_PINS[0]]
    pins = []
    for line in (REPO / "layers" / "serving" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if variant == "gpu" and line.startswith("onnxruntime=="):
            line = GPU_ONNXRUNTIME
        pins.append(line)
    return [*pins, *RUNTIME_PINS]


def dependencies(variant: str, spec: Variant) -> Path:
    """cp313 manylinux wheels installed by the host's pip, once per set of pins."""
    pins = requirements(variant, spec)
    key = hashlib.sha256("\n".join(pins).encode()).hexdigest()[:16]
    target = OUT / "deps" / f"{variant}-{key}"
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    py = spec.python
    abi = "cp" + py.replace(".", "")
    say(f"{variant}: {len(pins)} pinned dependencies ({abi} manylinux) into {target.relative_to(REPO)}")
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    pip = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(target),
            "--python-version", py, "--implementation", "cp", "--abi", abi, *platforms,
            "--only-binary=:all:", *pins,
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if pip.returncode != 0:  # its output only when it failed: the rest is pages of index warnings
        sys.exit(f"images: pip failed for {variant}:\n{pip.stdout}{pip.stderr}")
    (target / ".complete").touch()
    return target


def _copytree(src: Path, dst: Path) -> None:
    shutil.copytree(
        src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"), dirs_exist_ok=True
    )


def context(variant: str, spec: Variant) -> Path:
    """``build/images/context/<variant>/``: python/ (dependencies, library, encoder package, the worker in
    the GPU image) and task/."""
    from infra.encoder_layer import build as encoder_layer

    ctx = OUT / "context" / variant
    shutil.rmtree(ctx, ignore_errors=True)
    python = ctx / "python"
    say(f"{variant}: staging the context")
    shutil.copytree(
        dependencies(variant, spec), python, ignore=shutil.ignore_patterns(".complete"), copy_function=os.link
    )
    if spec.stage_context is not None:
        spec.stage_context(python, ctx / "task")
        return ctx
    _copytree(LIBRARY, python / "topicserve")
    if variant == "gpu":
        _copytree(WORKER, python / "topicserve_worker")
    manifest = REPO / "build" / "models" / "manifest.json"
    layer = encoder_layer(manifest, "int8", REPO / "build" / "layers" / "encoder-int8")  # as deploy makes it
    _copytree(layer, python / "topicserve_encoder")
    extra = _gpu_encoders(manifest) if variant == "gpu" else []
    for path in extra:
        shutil.copy2(path, python / "topicserve_encoder" / path.name)
    (ctx / "task").mkdir()
    shutil.copy2(REPO / "functions" / "predict" / "app.py", ctx / "task" / "app.py")
    return ctx


def _gpu_encoders(manifest_path: Path) -> list[Path]:
    """The fp16 encoder beside the INT8 one (the worker uses it on CUDA, the INT8 one on the CPU fallback)."""
    manifest = json.loads(manifest_path.read_text())
    entry = manifest.get("encoder", {}).get("fp16")
    if not entry:
        sys.exit("images: the manifest has no fp16 encoder: run `make models` again")
    return [REPO / entry["path"]]


def inputs_digest(variant: str, spec: Variant, base: str) -> str:
    """Everything an image is made of: a rebuild only when one of these changed."""
    digest = hashlib.sha256(f"{variant}\n{base}\n{requirements(variant, spec)}".encode())
    if spec.sources is not None:
        files = [CONTAINERFILE, *spec.sources()]
    else:
        files = [CONTAINERFILE, REPO / "functions" / "predict" / "app.py", *sorted(LIBRARY.rglob("*.py"))]
        if variant == "gpu":
            files += sorted(WORKER.rglob("*.py"))
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    manifest = json.loads((REPO / "build" / "models" / "manifest.json").read_text())
    for entry in manifest.get("encoder", {}).values():
        digest.update(str(entry.get("sha256", "")).encode())
    return digest.hexdigest()


def build(variant: str, spec: Variant, base: str) -> dict[str, object]:
    started = time.monotonic()
    ctx = context(variant, spec)
    tag = f"localhost/topicserve-{variant}:latest"
    target = spec.target
    say(f"{variant}: {spec.what}: buildah bud --target {target} (base {base})")
    buildah(
        "bud", "--quiet", "--isolation", "chroot", "--layers=false", "--target", target,
        "--build-arg", f"BASE_IMAGE={base}", "-f", str(CONTAINERFILE), "-t", tag, str(ctx),
    )  # fmt: skip
    archive = OUT / f"topicserve-{variant}.oci.tar"
    partial = archive.with_name(archive.name + ".part")
    partial.unlink(missing_ok=True)
    say(f"{variant}: exporting {archive.relative_to(REPO)}")
    buildah("push", "--quiet", tag, f"oci-archive:{partial}:latest")
    partial.rename(archive)
    buildah("rmi", "--prune", capture=True)  # the previous build of this tag, untagged now (vfs: copies)
    digest = archive_digest(archive)
    info = {
        "variant": variant,
        "archive": str(archive.relative_to(REPO)),
        "digest": digest,
        "archive_mb": round(archive.stat().st_size / 1e6, 1),
        "context_mb": round(_du(ctx) / 1e6, 1),
        "base": base,
        "seconds": round(time.monotonic() - started, 1),
    }
    say(f"{variant}: {info['archive_mb']} MB archive ({info['context_mb']} MB added to the base), {digest}")
    return info


def archive_digest(archive: Path) -> str:
    """The manifest digest of an OCI archive's one image (what ``ImageUri``'s ``@sha256:`` names)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        index = json.load(member)
    return str(index["manifests"][0]["digest"])


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="build the OCI images (buildah, no daemon)")
    parser.add_argument(
        "--variant", action="append", choices=sorted(VARIANTS), help="default: cpu (GPU=1: + gpu)"
    )
    parser.add_argument(
        "--base", default=os.environ.get("BASE_IMAGE"), help="base image (default: Debian trixie)"
    )
    args = parser.parse_args(argv)
    names = args.variant or (["cpu", "gpu"] if os.environ.get("GPU") == "1" else ["cpu"])
    build_images({name: VARIANTS[name] for name in names}, base=args.base)
    return 0


def build_images(variants: Mapping[str, Variant], *, base: str | None = None) -> dict[str, Any]:
    """Build each variant whose inputs changed since its last build; returns ``build/images/images.json``
    (per variant: archive, digest, sizes). The benchmarks call it with their own variant."""
    if not (REPO / "build" / "models" / "manifest.json").is_file():
        sys.exit("images: build/models/manifest.json not found: run `make models` first")
    ensure_tools()
    OUT.mkdir(parents=True, exist_ok=True)
    index_file = OUT / "images.json"
    index: dict[str, Any] = json.loads(index_file.read_text()) if index_file.exists() else {}
    for variant, spec in variants.items():
        image_base = base or base_image(spec.suite)
        inputs = inputs_digest(variant, spec, image_base)
        known = index.get(variant) or {}
        if known.get("inputs") == inputs and (REPO / str(known.get("archive", "-"))).is_file():
            say(f"{variant}: up to date ({known['archive']}, {known['archive_mb']} MB, {known['digest']})")
            continue
        index[variant] = {**build(variant, spec, image_base), "inputs": inputs}
        index_file.write_text(json.dumps(index, indent=2) + "\n")
    return index


if __name__ == "__main__":
    sys.exit(main())
