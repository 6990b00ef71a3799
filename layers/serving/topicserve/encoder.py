"""The sentence encoder at serving time: a (quantised) ONNX export of all-MiniLM-L6-v2 plus its tokenizer.

It depends only on numpy, onnxruntime, tokenizers and the stdlib, because it ships in a Lambda layer where
torch / transformers would blow the 250 MB limit. Pooling and L2 normalisation live inside the ONNX graph
(see ``training/export_encoder.py``), so this class only tokenises, pads and runs the session.

Why the tokenizer is reconfigured: the ``tokenizer.json`` shipped with the model has truncation 128 and
*fixed* padding to 128 built in. Fixed padding wastes compute on short texts (most 20NG posts are far
shorter than the limit), and 128 is an accidental limit, not a design choice. We truncate to an explicit
``max_length`` and pad each sub-batch only to its own longest text (dynamic padding); texts are sorted by
token length first so a sub-batch holds texts of similar lengths and little padding is computed.
"""

from __future__ import annotations

import hashlib
import os
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from topicserve.batching import length_buckets
from topicserve.catalogue import SERVED_BATCH_SIZE
from topicserve.errors import ArtifactError, TextTypeError
from topicserve.initsteps import stopwatch

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
TOKEN_TYPE_IDS = "token_type_ids"
OUTPUT = "sentence_embedding"
DEFAULT_MAX_LENGTH = 256
#: Characters of a text fed to the tokenizer first, per token the encoder reads (English averages ~4-5
#: characters a token, so one pass almost always suffices; see Encoder.tokenize).
PREFIX_CHARS_PER_TOKEN = 12


class Tokens(NamedTuple):
    """One text's token ids as the encoder reads them, and whether tokens were dropped (text too long)."""

    ids: list[int]
    truncated: bool


def _separator_between(text: str, start: int) -> bool:
    """Whether a whitespace or punctuation character lies in ``text[start:]``.

    BERT's pre-tokenizer splits words at both, so a cut after such a character cannot change the tokens of
    anything before it.
    """
    return any(c.isspace() or unicodedata.category(c).startswith("P") for c in reversed(text[start:]))


def _read_artifact(path: str | os.PathLike[str], what: str) -> bytes:
    """Read a whole artifact, turning every OS-level failure into :class:`ArtifactError`."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:  # missing, a directory, permissions ...
        raise ArtifactError(f"cannot read {what} {os.fspath(path)!r}: {exc}") from exc


def session_options(
    intra_op_threads: int | None, *, pre_optimized: bool = False, spinning: bool = False
) -> ort.SessionOptions:
    """Session options shared by the encoder and the heads.

    Lambda gives a fractional number of vCPUs; callers pass the thread count they measured to be best
    (None = onnxruntime's default: one thread per core). Inter-op parallelism is useless for these
    sequential graphs, so it is pinned to 1 to avoid spawning idle threads. ``pre_optimized``: the file
    is the graph ONNX Runtime saved after its own optimisations at build time (``make models``), so the
    session skips them (part of every cold start otherwise). ``spinning`` off: intra-op threads block
    between operators instead of spin-waiting, because a spinning thread burns the CPU share the work
    needs wherever cores are shared or throttled (Lambda gives ~1.2 vCPU at 2,048 MB and shows 2 cores):
    2 spinning threads ran at 0.52x of 1 thread on a loaded 2-core machine, 2 blocking ones at 0.9-1.1x,
    and on a quiet one blocking costs 0.81x of spinning (docs/MODELS.md, "Encoder variants").
    """
    so = ort.SessionOptions()
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if pre_optimized
        else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    )
    so.inter_op_num_threads = 1
    if intra_op_threads is not None:
        if intra_op_threads < 1:
            raise ValueError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
        so.intra_op_num_threads = int(intra_op_threads)
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.log_severity_level = 3  # warnings about unused initializers etc. are noise in Lambda logs
    return so


def load_session(
    data: bytes,
    path: str | os.PathLike[str],
    intra_op_threads: int | None,
    providers: Sequence[str] | None,
    *,
    pre_optimized: bool = False,
    spinning: bool = False,
) -> ort.InferenceSession:
    """Create an inference session from bytes already read (hashed once, parsed once)."""
    try:
        return ort.InferenceSession(
            data,
            sess_options=session_options(intra_op_threads, pre_optimized=pre_optimized, spinning=spinning),
            providers=list(providers) if providers else ["CPUExecutionProvider"],
        )
    except Exception as exc:  # onnxruntime raises its own exception types for corrupt graphs
        raise ArtifactError(f"cannot load ONNX model {os.fspath(path)!r}: {exc}") from exc


class Encoder:
    """Texts -> (n, 384) float32 L2-normalised embeddings with an ONNX MiniLM encoder.

    ``version`` identifies the encoder in every cache key (an embedding is only valid for the exact
    encoder that produced it); it defaults to the sha256 of the ONNX file, computed once at load.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        tokenizer_path: str | os.PathLike[str],
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        intra_op_threads: int | None = None,
        version: str | None = None,
        providers: Sequence[str] | None = None,
        pre_optimized: bool = False,
        spinning: bool = False,
    ) -> None:
        if not isinstance(max_length, int) or max_length < 3:
            raise ValueError(f"max_length must be an int >= 3 (room for [CLS] and [SEP]), got {max_length!r}")
        t0 = time.perf_counter()
        lap = stopwatch()
        data = _read_artifact(model_path, "encoder model")
        self.load_ms: dict[str, float] = {"encoder read": lap()}
        # None when the build recorded the sha256 as ``version``: hashing 22 MB again cost ~60 ms of every
        # cold start, and a layer's bytes are already checked by Lambda (its CodeSha256)
        self.sha256: str | None = None if version else hashlib.sha256(data).hexdigest()
        self.version: str = version or str(self.sha256)
        self.load_ms["encoder sha256"] = lap()
        self.max_length: int = max_length
        self.model_path = Path(model_path)
        self._session = load_session(
            data, model_path, intra_op_threads, providers, pre_optimized=pre_optimized, spinning=spinning
        )
        del data
        self.load_ms["encoder session"] = lap()

        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
        if INPUT_IDS not in inputs or ATTENTION_MASK not in inputs or OUTPUT not in outputs:
            raise ArtifactError(
                f"{os.fspath(model_path)!r} is not an encoder graph: inputs {sorted(inputs)}, "
                f"outputs {sorted(outputs)}; expected {INPUT_IDS}, {ATTENTION_MASK} -> {OUTPUT}"
            )
        self._needs_token_type_ids = TOKEN_TYPE_IDS in inputs
        dim = outputs[OUTPUT].shape[-1]
        self.dim: int = dim if isinstance(dim, int) else 384

        self._tokenizer, self.tokenizer_version = self._load_tokenizer(tokenizer_path, max_length)
        self._pad_id = self._tokenizer.token_to_id("[PAD]") or 0
        self.load_ms["tokenizer"] = lap()
        self.prefix_chars: int = max_length * PREFIX_CHARS_PER_TOKEN
        self.load_seconds: float = time.perf_counter() - t0

    @staticmethod
    def _load_tokenizer(path: str | os.PathLike[str], max_length: int) -> tuple[Tokenizer, str]:
        """Load tokenizer.json and replace its built-in truncation 128 / fixed padding 128; with its
        sha256 (part of every cache key: another vocabulary gives other ids for the same text)."""
        raw = _read_artifact(path, "tokenizer")
        try:
            tok = Tokenizer.from_str(raw.decode("utf-8"))
        except Exception as exc:
            raise ArtifactError(f"cannot parse tokenizer {os.fspath(path)!r}: {exc}") from exc
        tok.enable_truncation(max_length=max_length)
        tok.no_padding()  # we pad per sub-batch ourselves (dynamic padding), see encode()
        return tok, hashlib.sha256(raw).hexdigest()

    def tokenize(self, texts: Sequence[str]) -> list[Tokens]:
        """Token ids of each text as the encoder reads them (its first ``max_length`` tokens).

        The tokenizer is fed a bounded prefix, so a huge text costs no more than a long one. The result is
        exactly what tokenising the whole text and truncating would give (sentence-transformers' rule): a
        prefix is accepted only when the tokens kept end before a separator that precedes the cut, so the
        word the cut splits contributes no token; otherwise the prefix grows (x4) up to the whole text.
        """
        if isinstance(texts, str):
            raise TextTypeError("texts must be a sequence of strings, not a single string")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TextTypeError(f"text {i} is {type(t).__name__}, not str")
        out: list[Tokens | None] = [None] * len(texts)
        pending, limit = list(range(len(texts))), self.prefix_chars
        while pending:
            chunks = [texts[i][:limit] for i in pending]
            undecided = []
            for i, chunk, enc in zip(pending, chunks, self._tokenizer.encode_batch(chunks), strict=True):
                if len(chunk) == len(texts[i]):
                    out[i] = Tokens(enc.ids, truncated=bool(enc.overflowing))
                elif enc.overflowing and _separator_between(chunk, enc.offsets[-2][1]):
                    out[i] = Tokens(enc.ids, truncated=True)
                else:
                    undecided.append(i)
            pending, limit = undecided, limit * 4
        return [t for t in out if t is not None]

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Token count of each text after truncation (with [CLS]/[SEP]), for callers' length bucketing."""
        return [len(t.ids) for t in self.tokenize(texts)]

    def encode(self, texts: Sequence[str], batch_size: int = SERVED_BATCH_SIZE) -> np.ndarray:
        """Embed ``texts``; returns (len(texts), dim) float32 rows in input order, each of unit L2 norm."""
        return self.encode_tokens([t.ids for t in self.tokenize(texts)], batch_size=batch_size)

    def encode_tokens(self, ids: Sequence[Sequence[int]], batch_size: int = SERVED_BATCH_SIZE) -> np.ndarray:
        """Embed already tokenised texts (from :meth:`tokenize`), so a caller that needed the tokens
        anyway (for the truncation flag) does not tokenise twice.

        Texts are sorted by token length and cut into sub-batches of ``batch_size``; each sub-batch is
        padded to its own longest text. Sorting matters: attention costs O(seq^2) and padding tokens are
        computed like real ones, so one long text in a batch of short ones would multiply the work.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        if not ids:
            return out
        for bucket in length_buckets([len(x) for x in ids], max_batch=batch_size):
            out[bucket] = self._run([ids[i] for i in bucket])
        return out

    def _run(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        width = max(len(x) for x in batch)
        input_ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, x in enumerate(batch):
            input_ids[row, : len(x)] = x
            mask[row, : len(x)] = 1
        feed = {INPUT_IDS: input_ids, ATTENTION_MASK: mask}
        if self._needs_token_type_ids:
            feed[TOKEN_TYPE_IDS] = np.zeros_like(input_ids)
        embeddings: np.ndarray = self._session.run([OUTPUT], feed)[0]  # onnxruntime is untyped
        return embeddings

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually got, in priority order.

        Not what was asked for: onnxruntime-gpu on a machine without a usable GPU creates the session on
        the CPU without an error (``get_available_providers()`` still lists CUDA), so only this tells
        which device runs the encoder (see :mod:`topicserve_worker.accelerator`).
        """
        providers: list[str] = self._session.get_providers()
        return providers

    def __repr__(self) -> str:
        return f"Encoder(version={self.version[:12]}..., max_length={self.max_length}, dim={self.dim})"
