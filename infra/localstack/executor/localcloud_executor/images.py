"""Container-image functions: map an ``ImageUri`` to a local OCI archive and unpack it once per digest.

LocalStack community accepts ``PackageType: Image`` functions but will not run them; with no registry
reachable here, ``make images`` writes OCI archives (``build/images/<repository>.oci.tar``) and this module
plays the part of Lambda's image pull:

* ``ImageUri``'s repository name (its last path segment) names the archive; a ``@sha256:`` digest in the URI
  must be the archive's manifest digest (a stale archive is refused, as ECR would not find the image);
* the layers are applied in order into ``<cache>/<digest>/rootfs`` with the OCI whiteout rules, once per
  digest (a lock file serialises concurrent environments; a completed unpack is marked by a stamp file);
* the image config (entrypoint, command, working directory, environment) comes back with it, and the
  function's ``ImageConfig`` overrides entrypoint, command and working directory, as on Lambda.

Stdlib only: it runs inside LocalStack's process.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class ImageError(Exception):
    """The image cannot be found or unpacked: the function fails to start with this message."""


@dataclass(frozen=True)
class Image:
    digest: str
    rootfs: Path
    entrypoint: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    working_dir: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def argv(self, overrides: Any = None) -> list[str]:
        """Entrypoint + command, with the function's ImageConfig (``entrypoint``/``command``) winning."""
        entrypoint = list(getattr(overrides, "entrypoint", None) or self.entrypoint)
        command = list(getattr(overrides, "command", None) or self.command)
        argv = entrypoint + command
        if not argv:
            raise ImageError("the image has neither an entrypoint nor a command")
        return argv

    def workdir(self, overrides: Any = None) -> str:
        return getattr(overrides, "working_directory", None) or self.working_dir or "/"


def images_dir() -> Path:
    return Path(os.environ.get("LOCALCLOUD_IMAGES_DIR", "build/images")).resolve()


def cache_dir() -> Path:
    return Path(
        os.environ.get("LOCALCLOUD_IMAGE_CACHE", Path(os.environ.get("TMPDIR", "/tmp")) / "images")
    ).resolve()


def archive_for(uri: str, directory: Path | None = None) -> tuple[Path, str | None]:
    """``<account>.dkr.ecr.<region>.amazonaws.com/topicserve-cpu@sha256:...`` -> (archive, digest or None)."""
    directory = directory or images_dir()
    rest, _, digest = uri.partition("@")
    name = rest.rsplit("/", 1)[-1].split(":", 1)[0]
    if not name:
        raise ImageError(f"ImageUri {uri!r} names no repository")
    archive = directory / f"{name}.oci.tar"
    if not archive.is_file():
        raise ImageError(f"image {uri}: no local archive {archive} (build it with `make images`)")
    return archive, digest or None


def _blob(tar: tarfile.TarFile, digest: str) -> IO[bytes]:
    algorithm, _, hexdigest = digest.partition(":")
    member = tar.extractfile(f"blobs/{algorithm}/{hexdigest}")
    if member is None:
        raise ImageError(f"blob {digest} missing from the archive")
    return member


def _manifest(tar: tarfile.TarFile) -> tuple[str, dict[str, Any]]:
    index_file = tar.extractfile("index.json")
    if index_file is None:
        raise ImageError("not an OCI archive (no index.json)")
    index = json.load(index_file)
    descriptor = index["manifests"][0]
    return descriptor["digest"], json.load(_blob(tar, descriptor["digest"]))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def apply_layer(layer: IO[bytes], rootfs: Path) -> None:
    """Extract one layer tarball (gzip or plain) over ``rootfs``, honouring whiteouts and opaque dirs."""
    with tarfile.open(fileobj=layer, mode="r|*") as tar:
        for member in tar:
            path = Path(member.name.lstrip("/"))
            name = path.name
            if name == OPAQUE:
                target = rootfs / path.parent
                if target.is_dir():
                    for child in target.iterdir():
                        _remove(child)
                continue
            if name.startswith(WHITEOUT):
                _remove(rootfs / path.parent / name[len(WHITEOUT) :])
                continue
            target = rootfs / path
            if target.is_symlink() or (target.exists() and not (target.is_dir() and member.isdir())):
                _remove(target)
            tar.extract(member, rootfs, filter="tar")


def _config(tar: tarfile.TarFile, manifest: dict[str, Any]) -> dict[str, Any]:
    config = json.load(_blob(tar, manifest["config"]["digest"]))
    return config.get("config") or {}


def prepare(uri: str) -> Image:
    """The unpacked image for ``uri``: unpacked on first use, reused by every later environment."""
    archive, wanted = archive_for(uri)
    with tarfile.open(archive) as tar:
        digest, manifest = _manifest(tar)
        if wanted and wanted != digest:
            raise ImageError(f"image {uri}: the local archive {archive.name} holds {digest}, not {wanted}")
        config = _config(tar, manifest)
        home = cache_dir() / digest.replace(":", "-")
        rootfs = home / "rootfs"
        home.mkdir(parents=True, exist_ok=True)
        with open(home / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (home / ".complete").exists():
                shutil.rmtree(rootfs, ignore_errors=True)
                rootfs.mkdir()
                for layer in manifest["layers"]:
                    apply_layer(_blob(tar, layer["digest"]), rootfs)
                for mount_point in ("proc", "dev", "tmp"):
                    (rootfs / mount_point).mkdir(exist_ok=True)
                (home / ".complete").touch()
    env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    return Image(
        digest=digest,
        rootfs=rootfs,
        entrypoint=list(config.get("Entrypoint") or []),
        command=list(config.get("Cmd") or []),
        working_dir=config.get("WorkingDir") or "",
        env=env,
    )
