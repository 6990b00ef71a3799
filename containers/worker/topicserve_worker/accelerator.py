"""Which encoder the bulk worker runs: the fp16 encoder on CUDA where a GPU is usable, else INT8 on CPU.

Why two precisions: on a GPU, INT8 dynamic quantisation is slower than fp16 (its integer kernels target
CPUs), so the GPU runs the fp16 encoder (``make models``: training/fp16.py, cosine to fp32 >= 0.999); on a
CPU, INT8 is the fast one and the one the Lambda functions serve, so the fallback gives the same
embeddings, hence the same labels, as the Lambda path.

Why the decision comes from the session: ``onnxruntime-gpu`` on a machine without a usable GPU (no device,
no driver, CUDA libraries missing) imports fine, still lists ``CUDAExecutionProvider`` in
``get_available_providers()``, and creates the session on the CPU without an error. Only the created
session's ``get_providers()`` (:attr:`topicserve.encoder.Encoder.providers`) says what runs it. A fp16
session that landed on the CPU is dropped (fp16 on CPU is neither fast nor what the Lambda path computes),
and the INT8 encoder is loaded instead.

The encoder folder holds ``tokenizer.json`` and
* ``model.fp16.onnx``: the GPU encoder;
* ``model.int8.onnx`` (as in ``build/models/encoder``), or ``model.onnx`` with ``encoder.json`` (the
  encoder layer's layout, ``infra/encoder_layer.py``): the CPU encoder.

Selectable by setting (the worker's ``WORKER_ENCODER``): ``auto`` (GPU when usable, else CPU), ``cuda``
(a GPU or a failed start: a task meant for a GPU host must not quietly crawl on its CPU), ``cpu``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from topicserve.errors import ArtifactError, TopicServeError

if TYPE_CHECKING:  # imported where used: the worker's settings import this module without onnxruntime
    from topicserve.encoder import Encoder

logger = logging.getLogger("topicserve.accelerator")

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
FP16_MODEL = "model.fp16.onnx"
INT8_MODEL = "model.int8.onnx"
LAYER_MODEL = "model.onnx"
TOKENIZER = "tokenizer.json"
INFO = "encoder.json"

Mode = Literal["auto", "cuda", "cpu"]
MODES: tuple[Mode, ...] = ("auto", "cuda", "cpu")
#: builds an encoder: (model, tokenizer, *, max_length, intra_op_threads, version, providers) -> Encoder
Loader = Callable[..., "Encoder"]


class AcceleratorUnavailableError(TopicServeError):
    """``cuda`` was required, but the fp16 encoder could not run on a GPU here."""


@dataclass(frozen=True)
class EncoderChoice:
    """What runs the encoder, and why: logged and emitted as a metric at the worker's start."""

    provider: str  # the session's first provider: the one its nodes are placed on first
    precision: str  # "fp16" or "int8" (an encoder layer's recorded variant)
    path: str
    mode: Mode  # what was asked
    reason: str  # why this encoder (on a fallback: why not the GPU)
    session_providers: tuple[str, ...]

    @property
    def on_gpu(self) -> bool:
        return self.provider == CUDA

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "session_providers": list(self.session_providers), "on_gpu": self.on_gpu}


class SelectedEncoder(NamedTuple):
    encoder: Encoder
    choice: EncoderChoice


def parse_mode(raw: str | None, setting: str = "WORKER_ENCODER") -> Mode:
    """``auto`` when unset; anything but auto/cuda/cpu is an error at start, not a silent default."""
    value = (raw or "").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"setting {setting} must be one of {', '.join(MODES)}, got {raw!r}")
    return value


def cpu_model(folder: Path) -> tuple[Path, str, str | None]:
    """The CPU encoder in ``folder``: its file, its precision and its recorded sha256 (None: hash it)."""
    if (folder / INT8_MODEL).is_file():
        return folder / INT8_MODEL, "int8", None
    if (folder / LAYER_MODEL).is_file():
        info_path = folder / INFO
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        return folder / LAYER_MODEL, str(info.get("variant", "int8")), info.get("sha256")
    raise ArtifactError(f"no CPU encoder in {os.fspath(folder)!r}: expected {INT8_MODEL} or {LAYER_MODEL}")


def _same_file(encoder: Encoder | None, path: Path) -> bool:
    """Whether ``encoder`` was loaded from ``path``: the same file, also through a hard link (the encoder
    layer hard-links build/models' INT8 file as its model.onnx)."""
    try:
        return encoder is not None and os.path.samefile(encoder.model_path, path)
    except OSError:
        return False


def _preload_cuda_libraries(ort: Any) -> None:
    """Load CUDA and cuDNN from the nvidia-* wheels (``onnxruntime-gpu[cuda,cudnn]``, the GPU image) before
    the session: they are not on the loader's path, so without this the CUDA provider fails to load
    (``libcublasLt.so.13: cannot open shared object file``, seen in the GPU image) and the worker would fall
    back to the CPU even on a GPU host. What still fails after it (no driver: ``libcuda.so.1``) is a machine
    without a usable GPU, which the session's providers then report."""
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime-gpu >= 1.21
    if preload is None:
        return
    try:
        preload(cuda=True, cudnn=True, msvc=False)
    except Exception as exc:  # libraries from elsewhere (LD_LIBRARY_PATH, a CUDA base image) may still do
        logger.info("CUDA libraries not preloaded from the nvidia wheels", extra={"error": str(exc)})


def _try_gpu(fp16: Path, tokenizer: Path, load: Loader, max_length: int) -> tuple[Encoder | None, str]:
    """The fp16 encoder if its session really runs on CUDA, else None and why not."""
    if not fp16.is_file():
        return None, f"no {FP16_MODEL} in {os.fspath(fp16.parent)!r}"
    import onnxruntime as ort

    available: Sequence[str] = ort.get_available_providers()
    if CUDA not in available:  # the CPU-only wheel: asking would only print a warning
        return None, f"this onnxruntime has no {CUDA} (available: {', '.join(available)})"
    _preload_cuda_libraries(ort)
    try:
        # intra-op threads are the CPU's business: the few nodes CUDA leaves to the CPU are shape ops
        encoder = load(fp16, tokenizer, max_length=max_length, providers=[CUDA, CPU])
    except ArtifactError as exc:
        return None, f"the fp16 session failed on {CUDA}: {exc}"
    got = list(encoder.providers)
    if got and got[0] == CUDA:
        return encoder, f"the fp16 session runs on {CUDA} (session providers: {', '.join(got)})"
    return None, f"asked for {CUDA}, the session got {', '.join(got) or 'nothing'}: no usable GPU"


def select_encoder(
    folder: str | os.PathLike[str],
    mode: str = "auto",
    *,
    max_length: int | None = None,
    intra_op_threads: int | None = None,
    preloaded: Encoder | None = None,
    load: Loader | None = None,
) -> SelectedEncoder:
    """The encoder to run from ``folder``, and the record of what runs it.

    ``mode``: ``auto`` tries the fp16 encoder on CUDA and falls back to the CPU encoder, ``cuda`` raises
    :class:`AcceleratorUnavailableError` instead of falling back, ``cpu`` never tries the GPU.
    ``preloaded``: an encoder already loaded on the CPU (the runtime's); reused when it is the same file
    as the CPU encoder, so a fallback does not load the INT8 model a second time. ``max_length`` defaults
    to the encoder's (256 tokens); ``load`` builds an encoder (:class:`~topicserve.encoder.Encoder`;
    tests pass fakes).
    """
    from topicserve.encoder import DEFAULT_MAX_LENGTH, Encoder

    load = load or Encoder
    max_length = max_length or DEFAULT_MAX_LENGTH
    where = Path(folder)
    asked = parse_mode(mode)
    tokenizer = where / TOKENIZER
    if asked == "cpu":
        reason = "WORKER_ENCODER=cpu"
    else:
        encoder, reason = _try_gpu(where / FP16_MODEL, tokenizer, load, max_length)
        if encoder is not None:
            choice = EncoderChoice(
                CUDA, "fp16", os.fspath(where / FP16_MODEL), asked, reason, tuple(encoder.providers)
            )
            return SelectedEncoder(encoder, choice)
        if asked == "cuda":
            raise AcceleratorUnavailableError(f"WORKER_ENCODER=cuda, but {reason}")
    path, precision, version = cpu_model(where)
    if preloaded is not None and _same_file(preloaded, path):
        cpu_encoder = preloaded
    else:
        cpu_encoder = load(
            path,
            tokenizer,
            max_length=max_length,
            intra_op_threads=intra_op_threads,
            version=version,
            providers=[CPU],
        )
    got = tuple(cpu_encoder.providers)
    return SelectedEncoder(
        cpu_encoder, EncoderChoice(got[0] if got else CPU, precision, os.fspath(path), asked, reason, got)
    )
