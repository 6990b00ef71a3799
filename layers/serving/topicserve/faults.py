"""Chaos switches for test stacks: batch faults and environment deaths (nothing is lost), and per-text
stage faults (one poison input never takes down its neighbours). All off by default.

Each switch is a wrapper around a part the pipeline already talks to through a protocol, applied once at
wiring time and only on a stack deployed with ``TestSwitches=true`` (``Settings.test_switches``): the
pipeline itself (:class:`~topicserve.service.InferenceService`, :func:`~topicserve.batcher.process_records`)
has no fault code in it, and a production environment runs the unwrapped parts.

**Batch faults** (:class:`FaultInjector`, around the batcher's results write). The reliability tests turn
them on by setting ``FAULT_RATE`` / ``FAULT_KILL_RATE`` on the batcher function's configuration, then turn
them off again. The fault strikes *between* two halves of a batch's result write, the worst moment: half
the results are already stored when the invocation fails, so SQS delivers every message of the batch again
and the already-written half is written a second time. That is exactly the duplicate delivery the results
table must absorb (one item per (batch_id, request_id)), and the un-written half is exactly the work that
must not be lost.

* ``FAULT_RATE``: probability per batch that the handler raises :class:`InjectedFault` (a crashing
  invocation: Lambda reports a function error, the whole batch becomes visible again after the queue's
  visibility timeout);
* ``FAULT_KILL_RATE``: probability per batch that the process exits at once with ``os._exit(137)`` (an
  execution environment killed mid-batch, as by the OOM killer: no ``finally``, no flush, no response).

**Stage faults** (``FAULT_MARKERS``, :class:`StageFaults`): a pass over a text carrying a stage's marker
fails at that stage, every time. :func:`with_test_faults` wraps the encoder (:class:`FaultyEncoder`:
``transient``, ``tokenize``, ``encode``) and every head the router loads (:class:`FaultyHead`: ``head``);
the batcher wraps its result shaping (:meth:`StageFaults.wrap_shape`: ``shape``).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from topicserve.errors import BackendUnavailableError
from topicserve.protocols import EncoderLike, HeadLike, TokensLike

if TYPE_CHECKING:
    from topicserve.settings import Settings

logger = logging.getLogger(__name__)

Row = TypeVar("Row")


class _Request(Protocol):
    @property
    def text(self) -> str: ...


Request = TypeVar("Request", bound=_Request)
Result = TypeVar("Result")
KILL_EXIT_CODE = 137  # what a SIGKILLed process reports: the OOM killer's signature


class InjectedFault(RuntimeError):
    """Raised by the chaos switch; never raised when the switch is off."""


@dataclass
class FaultInjector:
    fail_rate: float = 0.0
    kill_rate: float = 0.0
    rng: random.Random = field(default_factory=random.Random)
    exit: Callable[[int], Any] = os._exit

    def __post_init__(self) -> None:
        for name, rate in (("FAULT_RATE", self.fail_rate), ("FAULT_KILL_RATE", self.kill_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {rate}")
        if self.fail_rate + self.kill_rate > 1.0:
            raise ValueError("FAULT_RATE + FAULT_KILL_RATE must not exceed 1")

    @property
    def enabled(self) -> bool:
        return self.fail_rate > 0 or self.kill_rate > 0

    def wrap_write(self, write: Callable[[list[Row]], None]) -> Callable[[list[Row]], None]:
        """``write`` itself when the switch is off (zero cost in production), else a faulty version."""
        if not self.enabled:
            return write

        def faulty_write(rows: list[Row]) -> None:
            roll = self.rng.random()
            if roll >= self.fail_rate + self.kill_rate:
                write(rows)
                return
            half = len(rows) // 2
            if half:
                write(rows[:half])
            if roll < self.kill_rate:
                logger.warning("chaos: killing the execution environment mid-batch", extra={"written": half})
                self.exit(KILL_EXIT_CODE)
            logger.warning("chaos: failing the batch mid-write", extra={"written": half})
            raise InjectedFault(f"injected fault after writing {half} of {len(rows)} results")

        return faulty_write


#: Where a stage fault can strike: the encoder's passes (``tokenize``, ``encode``), the heads' (``head``),
#: the batcher's shaping of a result (``shape``), and ``transient``: a backend outage at the start of a
#: pass (the request must be retried, not answered with an error).
STAGES = ("transient", "tokenize", "encode", "head", "shape")


@dataclass(frozen=True)
class StageFaults:
    """Deterministic per-text faults, to prove failure isolation end to end (``FAULT_MARKERS``).

    ``FAULT_MARKERS="encode=FAULTENCODE,head=FAULTHEAD"`` makes any pass over a text containing the marker
    fail at that stage, every time: exactly the shape of a poison input that breaks one stage, which the
    batcher must pin on its message and answer with an error result while serving the rest.
    """

    markers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str) -> StageFaults:
        markers: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in raw.split(","))):
            stage, _, marker = part.partition("=")
            if stage not in STAGES or not marker:
                raise ValueError(f"FAULT_MARKERS entries are stage=marker with a stage in {STAGES}: {part!r}")
            markers[stage] = marker
        return cls(markers)

    def marks(self, stage: str, text: str) -> bool:
        marker = self.markers.get(stage)
        return marker is not None and marker in text

    def check(self, stage: str, texts: Iterable[str]) -> None:
        """Raise the stage's fault if one of ``texts`` carries its marker."""
        if any(self.marks(stage, t) for t in texts):
            self.fail(stage)

    def fail(self, stage: str) -> None:
        marker = self.markers[stage]
        if stage == "transient":
            raise BackendUnavailableError(f"injected transient fault ({marker})")
        raise InjectedFault(f"injected {stage} fault ({marker})")

    def wrap_shape(
        self, shape: Callable[[Request, Result, int, Any], dict[str, Any]]
    ) -> Callable[[Request, Result, int, Any], dict[str, Any]]:
        """The batcher's result shaping (:func:`topicserve.batcher.shape_answer`), failing for a request whose
        text carries the ``shape`` marker; ``shape`` itself without one."""
        if "shape" not in self.markers:
            return shape

        def faulty_shape(request: Request, result: Result, i: int, compared: Any = None) -> dict[str, Any]:
            self.check("shape", [request.text])
            return shape(request, result, i, compared)

        return faulty_shape


@dataclass
class Poisoned:
    """What the faulty encoder saw of marked texts, for the steps after it: the encoder's own later calls
    get token ids, the heads embeddings, never the text."""

    ids: dict[tuple[int, ...], set[str]] = field(default_factory=dict)  # token ids -> stages marked
    rows: set[bytes] = field(default_factory=set)  # embeddings encoded for texts marked for ``head``


class FaultyEncoder:
    """An :class:`~topicserve.protocols.EncoderLike` whose passes over marked texts fail: ``transient`` and
    ``tokenize`` when the texts are tokenised (a pass's first step), ``encode`` when their token ids are
    encoded. It remembers the embeddings it made of texts marked for ``head``, so that :class:`FaultyHead`
    fails on them. Everything else (versions, ``encode``, ``dim``) is the wrapped encoder's."""

    def __init__(self, inner: EncoderLike, faults: StageFaults, poisoned: Poisoned | None = None) -> None:
        self.inner = inner
        self.faults = faults
        self.poisoned = poisoned if poisoned is not None else Poisoned()
        self.version = inner.version
        self.tokenizer_version = inner.tokenizer_version
        self.max_length = inner.max_length

    def tokenize(self, texts: Sequence[str]) -> Sequence[TokensLike]:
        self.faults.check("transient", texts)
        self.faults.check("tokenize", texts)
        tokens = self.inner.tokenize(texts)
        for text, tok in zip(texts, tokens, strict=True):
            stages = {s for s in ("encode", "head") if self.faults.marks(s, text)}
            if stages:
                self.poisoned.ids.setdefault(tuple(tok.ids), set()).update(stages)
        return tokens

    def encode_tokens(self, ids: Sequence[Sequence[int]], batch_size: int = 32) -> np.ndarray:
        stages = [self.poisoned.ids.get(tuple(x), set()) for x in ids]
        if any("encode" in s for s in stages):
            self.faults.fail("encode")
        vectors = self.inner.encode_tokens(ids, batch_size)
        self.poisoned.rows.update(
            row.tobytes() for row, s in zip(vectors, stages, strict=True) if "head" in s
        )
        return vectors

    def around(self, encoder: EncoderLike) -> EncoderLike:
        """``encoder`` with these faults (the bulk worker swapping in its GPU encoder keeps them)."""
        return self if encoder is self.inner else FaultyEncoder(encoder, self.faults, self.poisoned)

    def __getattr__(self, name: str) -> Any:  # dim, encode, load_ms, ...: the wrapped encoder's
        if name == "inner":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


class FaultyHead:
    """A :class:`~topicserve.protocols.HeadLike` that fails on an embedding the faulty encoder made of a text
    marked for ``head``, every head alike (a candidate's failure is absorbed, as any candidate's). An
    embedding read from a cache record was not made here, so it is not recognised: as for ``encode``, a
    text must have been encoded by this environment to strike (a marked text never is stored: its pass
    fails before the write-back)."""

    def __init__(self, inner: HeadLike, faults: StageFaults, poisoned: Poisoned) -> None:
        self.inner = inner
        self.faults = faults
        self.poisoned = poisoned
        self.name = inner.name
        self.version = inner.version

    @property
    def labels(self) -> Sequence[str] | None:
        return self.inner.labels

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        if self.poisoned.rows and any(row.tobytes() in self.poisoned.rows for row in embeddings):
            self.faults.fail("head")
        return self.inner.predict_proba(embeddings)

    def __getattr__(self, name: str) -> Any:  # exact_embeddings, n_classes, sha256, ...: the wrapped head's
        if name == "inner":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


class HeadWrapping(Protocol):
    """Where the heads come from (:class:`~topicserve.rollout.router.Router`): it serves every head it has
    loaded, and every head it loads later, through ``wrap``."""

    def wrap_heads(self, wrap: Callable[[HeadLike], HeadLike]) -> None: ...


#: the stages the encoder and the heads see
PIPELINE_STAGES = ("transient", "tokenize", "encode", "head")


def with_test_faults(settings: Settings, encoder: EncoderLike, heads: HeadWrapping) -> EncoderLike:
    """The encoder, and every head ``heads`` serves, with the stage faults ``FAULT_MARKERS`` names (test
    stacks only: bootstrap calls this where ``Settings.test_switches`` is on). Without a marker for these
    stages, ``encoder`` itself and the heads untouched."""
    faults = StageFaults.parse(settings.fault_markers)
    if not any(stage in faults.markers for stage in PIPELINE_STAGES):
        return encoder
    logger.warning("chaos: stage faults on", extra={"markers": faults.markers})
    poisoned = Poisoned()
    if "head" in faults.markers:
        heads.wrap_heads(lambda head: FaultyHead(head, faults, poisoned))
    return FaultyEncoder(encoder, faults, poisoned)


def unwrapped(encoder: EncoderLike) -> EncoderLike:
    """The encoder inside the chaos switches (itself when there are none)."""
    return encoder.inner if isinstance(encoder, FaultyEncoder) else encoder


def same_faults(old: EncoderLike, new: EncoderLike) -> EncoderLike:
    """``new`` with the stage faults ``old`` carries (``new`` itself when ``old`` carries none)."""
    return old.around(new) if isinstance(old, FaultyEncoder) else new
