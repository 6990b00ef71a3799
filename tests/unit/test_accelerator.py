"""topicserve_worker.accelerator: the fp16 encoder on CUDA when a GPU really runs it, else the CPU INT8
encoder.

This machine has no GPU and the CPU build of onnxruntime, which is exactly the fallback. The other cases
are simulated at the boundary the module trusts: ``get_available_providers()`` (what onnxruntime-gpu
claims) and the created session's ``get_providers()`` (what it really got). The encoders are the tiny
synthetic graph of test_encoder.py, its fp16 conversion standing in for model.fp16.onnx.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest

from tests.unit.test_encoder import make_encoder_graph, make_tokenizer
from topicserve.encoder import Encoder
from topicserve.errors import ArtifactError
from topicserve_worker.accelerator import (
    CPU,
    CUDA,
    AcceleratorUnavailableError,
    parse_mode,
    select_encoder,
)

GPU_WHEEL = ["TensorrtExecutionProvider", CUDA, CPU]  # what onnxruntime-gpu lists, GPU or not


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An encoder folder as ``make models`` writes it: model.int8.onnx, model.fp16.onnx, tokenizer.json."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    d = tmp_path_factory.mktemp("encoder")
    make_encoder_graph(d / "model.int8.onnx")
    make_tokenizer(d / "tokenizer.json")
    half = convert_float_to_float16(onnx.load(str(d / "model.int8.onnx")), keep_io_types=True)
    onnx.save(half, str(d / "model.fp16.onnx"))
    return d


class Loads:
    """A loader that records what was asked for and can pretend the session landed on CUDA."""

    def __init__(self, *, cuda_works: bool) -> None:
        self.cuda_works = cuda_works
        self.calls: list[tuple[str, list[str]]] = []

    def __call__(self, model: Path, tokenizer: Path, **kwargs: Any) -> Encoder:
        asked = list(kwargs.pop("providers"))
        self.calls.append((Path(model).name, asked))
        encoder = Encoder(model, tokenizer, providers=[CPU], **kwargs)  # the only EP this machine has
        if self.cuda_works and CUDA in asked:
            return _OnCuda(encoder)
        return encoder


class _OnCuda(Encoder):
    """An encoder whose session reports CUDA first, as onnxruntime-gpu's does on a GPU."""

    def __init__(self, inner: Encoder) -> None:  # adopt the inner encoder's state; no second load
        self.__dict__.update(inner.__dict__)

    @property
    def providers(self) -> list[str]:
        return [CUDA, CPU]


def test_fallback_here_is_the_int8_encoder_on_cpu(folder: Path) -> None:
    """The real thing on this machine: CPU-only onnxruntime, so auto falls back without trying CUDA."""
    assert CUDA not in onnxruntime.get_available_providers()
    encoder, choice = select_encoder(folder)
    assert (choice.provider, choice.precision, choice.on_gpu) == (CPU, "int8", False)
    assert choice.path == str(folder / "model.int8.onnx") and choice.mode == "auto"
    assert CUDA in choice.reason and choice.session_providers == (CPU,)
    assert encoder.providers == [CPU]
    vectors = encoder.encode(["w1 w2 w3", "w4"])
    assert vectors.shape == (2, 8) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_gpu_wheel_without_a_gpu_falls_back_on_what_the_session_got(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnxruntime-gpu lists CUDA as available and still creates the session on the CPU: the decision
    must come from the session, and the fp16 session must be dropped for the INT8 one."""
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: GPU_WHEEL)
    load = Loads(cuda_works=False)
    encoder, choice = select_encoder(folder, "auto", load=load)
    assert load.calls == [("model.fp16.onnx", [CUDA, CPU]), ("model.int8.onnx", [CPU])]
    assert (choice.provider, choice.precision) == (CPU, "int8")
    assert "session got CPUExecutionProvider" in choice.reason
    assert encoder.providers == [CPU]


def test_real_cpu_build_asked_for_cuda_also_lands_on_cpu(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the fake loader: onnxruntime itself, asked for CUDA it does not have, gives a CPU session
    (with a warning), and the selection notices from get_providers()."""
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: GPU_WHEEL)
    with pytest.warns(UserWarning, match="CUDAExecutionProvider"):
        _, choice = select_encoder(folder, "auto")
    assert (choice.provider, choice.precision) == (CPU, "int8")


def test_fp16_on_cuda_when_the_session_runs_there(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: GPU_WHEEL)
    load = Loads(cuda_works=True)
    encoder, choice = select_encoder(folder, "auto", load=load)
    assert load.calls == [("model.fp16.onnx", [CUDA, CPU])]  # the INT8 encoder is never loaded
    assert (choice.provider, choice.precision, choice.on_gpu) == (CUDA, "fp16", True)
    assert choice.path == str(folder / "model.fp16.onnx")
    assert choice.session_providers == (CUDA, CPU)
    assert encoder.encode(["w1 w2"]).dtype == np.float32  # fp16 inside, float32 out (keep_io_types)


def test_cuda_mode_refuses_to_fall_back(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AcceleratorUnavailableError, match="no CUDAExecutionProvider"):
        select_encoder(folder, "cuda")
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: GPU_WHEEL)
    with pytest.raises(AcceleratorUnavailableError, match="no usable GPU"):
        select_encoder(folder, "cuda", load=Loads(cuda_works=False))
    _, choice = select_encoder(folder, "cuda", load=Loads(cuda_works=True))
    assert choice.on_gpu


def test_cpu_mode_never_tries_the_gpu(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: GPU_WHEEL)
    load = Loads(cuda_works=True)
    _, choice = select_encoder(folder, "cpu", load=load)
    assert load.calls == [("model.int8.onnx", [CPU])]
    assert (choice.provider, choice.precision, choice.mode) == (CPU, "int8", "cpu")


def test_a_failing_fp16_session_falls_back(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """E.g. CUDA libraries that fail at session creation: auto still serves, on the CPU."""
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: GPU_WHEEL)

    def load(model: Path, tokenizer: Path, **kwargs: Any) -> Encoder:
        if CUDA in kwargs["providers"]:
            raise ArtifactError("CUDA failure 100: no CUDA-capable device is detected")
        return Encoder(model, tokenizer, **kwargs)

    _, choice = select_encoder(folder, "auto", load=load)
    assert choice.precision == "int8" and "CUDA failure 100" in choice.reason


def test_no_fp16_file_falls_back(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(folder / "model.int8.onnx", tmp_path / "model.int8.onnx")
    shutil.copy(folder / "tokenizer.json", tmp_path / "tokenizer.json")
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: GPU_WHEEL)
    _, choice = select_encoder(tmp_path, "auto", load=Loads(cuda_works=True))
    assert choice.precision == "int8" and "no model.fp16.onnx" in choice.reason


def test_encoder_layer_layout(folder: Path, tmp_path: Path) -> None:
    """The encoder layer has model.onnx + encoder.json (its variant and sha256, the cache-key version)."""
    shutil.copy(folder / "model.int8.onnx", tmp_path / "model.onnx")
    shutil.copy(folder / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "encoder.json").write_text(json.dumps({"variant": "int8", "sha256": "ab" * 32}))
    encoder, choice = select_encoder(tmp_path)
    assert choice.path == str(tmp_path / "model.onnx") and choice.precision == "int8"
    assert encoder.version == "ab" * 32


def test_a_preloaded_cpu_encoder_is_reused(folder: Path) -> None:
    """The worker's runtime already loaded the INT8 encoder: a fallback must not load it again."""
    loaded = Encoder(folder / "model.int8.onnx", folder / "tokenizer.json")
    load = Loads(cuda_works=False)
    encoder, _ = select_encoder(folder, "cpu", preloaded=loaded, load=load)
    assert encoder is loaded and load.calls == []
    other = Encoder(folder / "model.fp16.onnx", folder / "tokenizer.json")  # not the CPU encoder's file
    encoder, _ = select_encoder(folder, "cpu", preloaded=other, load=load)
    assert encoder is not other and load.calls == [("model.int8.onnx", [CPU])]


def test_missing_cpu_encoder_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no CPU encoder"):
        select_encoder(tmp_path, "auto")


@pytest.mark.parametrize(
    ("raw", "mode"), [(None, "auto"), ("", "auto"), (" CUDA ", "cuda"), ("cpu", "cpu"), ("auto", "auto")]
)
def test_parse_mode(raw: str | None, mode: str) -> None:
    assert parse_mode(raw) == mode


def test_parse_mode_rejects_unknown_values() -> None:
    with pytest.raises(ValueError, match="WORKER_ENCODER must be one of auto, cuda, cpu"):
        parse_mode("gpu")


def test_choice_as_dict_is_json(folder: Path) -> None:
    _, choice = select_encoder(folder)
    record = json.loads(json.dumps(choice.as_dict()))
    assert record["provider"] == CPU and record["on_gpu"] is False
    assert record["session_providers"] == [CPU]


def test_a_hard_link_to_the_preloaded_file_counts_as_the_same(folder: Path, tmp_path: Path) -> None:
    """The encoder layer hard-links build/models' model.int8.onnx as its model.onnx."""
    os.link(folder / "model.int8.onnx", tmp_path / "model.onnx")
    shutil.copy(folder / "tokenizer.json", tmp_path / "tokenizer.json")
    loaded = Encoder(folder / "model.int8.onnx", folder / "tokenizer.json")
    load = Loads(cuda_works=False)
    encoder, choice = select_encoder(tmp_path, "cpu", preloaded=loaded, load=load)
    assert encoder is loaded and load.calls == [] and choice.path == str(tmp_path / "model.onnx")


def test_cuda_libraries_from_the_nvidia_wheels_are_preloaded_and_a_failure_is_not_fatal() -> None:
    from topicserve_worker.accelerator import _preload_cuda_libraries

    calls: list[dict[str, bool]] = []

    class Ort:
        @staticmethod
        def preload_dlls(**kwargs: bool) -> None:
            calls.append(kwargs)
            raise OSError("libcudart.so.13: not found")

    _preload_cuda_libraries(Ort())  # logged, not raised: the session's providers decide
    assert calls == [{"cuda": True, "cudnn": True, "msvc": False}]
    _preload_cuda_libraries(object())  # an onnxruntime without preload_dlls: nothing to do
