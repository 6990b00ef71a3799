"""The inference pipeline shared by the synchronous predict functions and the SQS batcher.

For a batch of texts and a set of heads it does the least work the caches allow:

1. hash every (already validated, normalised) text and deduplicate: each distinct text is handled once
   (common-subexpression elimination of the expensive encoder pass);
2. tokenise each distinct text once (bounded prefix): that says whether the encoder reads all of it (the
   ``truncated`` flag of every answer) and refuses texts with nothing the encoder can read;
3. look up every (text, head) prediction in the prediction cache, in one store round;
4. for the texts some head still needs, look up their embeddings in the embedding cache, in one round;
5. encode only the texts with no cached embedding, in one encoder call (the encoder length-buckets them);
6. run each head once on the stacked embeddings it still needs, and write back what was computed.

Nothing here knows about Lambda, HTTP, SQS or DynamoDB: the caches are injected, the encoder and heads are
duck-typed, and the result carries counters that the handlers turn into metrics and logs.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from topicserve.batching import dedupe
from topicserve.cache.store import CacheStore
from topicserve.cache.typed import EmbeddingCache, PredictionCache
from topicserve.catalogue import check_models
from topicserve.errors import (
    EmptyTextError,
    InvalidInputError,
    UnprocessableTextError,
    is_transient,
)
from topicserve.faults import StageFaults
from topicserve.isolation import isolate
from topicserve.protocols import EncoderLike, HeadLike, TokensLike
from topicserve.rollout.routing import PRODUCTION, HeadKey, Plan, Route, plan_routes
from topicserve.rollout.tally import Observation, Tally
from topicserve.text import CheckedText, text_hash

__all__ = ["EncoderLike", "HeadLike", "InferenceService", "Route", "TokensLike"]

#: [CLS] and [SEP]: a text with no more tokens than these gives the encoder nothing to read
SPECIAL_TOKENS = 2


@dataclass(frozen=True)
class Prediction:
    """One head's answer for one text."""

    label: str
    label_id: int
    top: list[dict[str, Any]]
    cached: bool  # served from the prediction cache
    embedding_cached: bool  # embedding came from a cache (or the prediction did, so no encoding at all)
    version: str = ""  # the head version that answered
    stage: str = PRODUCTION  # its stage: production, or canary for the canary's share of texts


@dataclass
class Stats:
    texts: int = 0
    unique_texts: int = 0
    prediction_hits: int = 0
    prediction_misses: int = 0
    embedding_hits: int = 0
    encoded: int = 0
    cache_errors: int = 0
    encode_seconds: float = 0.0
    heads_seconds: float = 0.0
    cache_seconds: float = 0.0

    @property
    def duplicates(self) -> int:
        return self.texts - self.unique_texts


@dataclass
class BatchResult:
    predictions: dict[str, list[Prediction]]  # model name -> one Prediction per input text, in input order
    versions: dict[str, str]  # model name -> its production version (each Prediction names its own)
    encoder_version: str
    truncated: list[bool] = field(default_factory=list)  # per input text: the encoder read only its start
    stats: Stats = field(default_factory=Stats)
    rollout: list[Observation] = field(default_factory=list)  # what each canary / shadow did here
    # text hash -> embedding, for the distinct texts this call had one for (computed or from the
    # embedding cache; none for prediction-cache hits): monitoring samples these, at no extra cost
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    hashes: list[str] = field(default_factory=list)  # per input text, its text hash


def top_k(probabilities: np.ndarray, labels: Sequence[str], k: int) -> list[dict[str, Any]]:
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [
        {"label": labels[i], "label_id": int(i), "probability": round(float(probabilities[i]), 6)}
        for i in order
    ]


_writer: ThreadPoolExecutor | None = None
_writer_lock = threading.Lock()


def _cache_writer() -> ThreadPoolExecutor:
    """One thread per environment that runs the second of the two cache writes (see _write_caches)."""
    global _writer
    with _writer_lock:
        if _writer is None:
            _writer = ThreadPoolExecutor(1, thread_name_prefix="cache-write")
        return _writer


class RouteSource(Protocol):
    """Where the service reads each model's routing, once per call (the rollout router refreshes it)."""

    def current(self) -> Mapping[str, Route]: ...


class StaticRoutes:
    """Production heads only, fixed: tests, benchmarks, and any caller without a registry."""

    def __init__(self, heads: Mapping[str, HeadLike]) -> None:
        self.routes = {m: Route(head) for m, head in heads.items()}

    def current(self) -> Mapping[str, Route]:
        return self.routes


class InferenceService:
    def __init__(
        self,
        encoder: EncoderLike,
        heads: Mapping[str, HeadLike] | RouteSource,
        *,
        embedding_store: CacheStore | None = None,
        prediction_store: CacheStore | None = None,
        top: int = 3,
        encode_batch_size: int = 1,  # Settings.encode_batch_size says why
        dedup: bool = True,
        faults: StageFaults | None = None,
    ) -> None:
        self.encoder = encoder
        self.routes: RouteSource = StaticRoutes(heads) if isinstance(heads, Mapping) else heads
        self.embedding_cache = (
            EmbeddingCache(embedding_store, encoder.version) if embedding_store is not None else None
        )
        self.prediction_cache = (
            PredictionCache(prediction_store, encoder.version) if prediction_store is not None else None
        )
        self.top = top
        self.encode_batch_size = encode_batch_size
        self.dedup = dedup  # False: encode every occurrence of a repeated text (benchmark baseline only)
        self.faults = faults or StageFaults()  # test stacks only: see topicserve.faults

    @property
    def heads(self) -> dict[str, HeadLike]:
        """The production head of every model."""
        return {m: r.production for m, r in self.routes.current().items()}

    @property
    def models(self) -> list[str]:
        return sorted(self.routes.current())

    def predict(
        self, texts: Sequence[str], models: Sequence[str], *, cut: Sequence[bool] | None = None
    ) -> BatchResult:
        """Predict every model for every text. ``texts`` must already be validated and normalised;
        ``cut[i]`` says the caller's text i was longer than what was passed (it is reported truncated)."""
        routes = self.routes.current()  # one snapshot per call: a refresh never splits a request
        models = check_models(models, sorted(routes))
        stats = Stats(texts=len(texts))
        self.faults.check("transient", texts)
        errors_before = self._cache_errors()
        hashes = [text_hash(t) for t in texts]
        dd = dedupe(hashes)
        unique_hashes = dd.unique
        first_index = {h: i for i, h in reversed(list(enumerate(hashes)))}
        unique_texts = [texts[first_index[h]] for h in unique_hashes]
        stats.unique_texts = len(unique_hashes)

        # 2. tokens of every distinct text: the truncation flag, and nothing-to-read texts refused
        self.faults.check("tokenize", unique_texts)
        tokens = dict(zip(unique_hashes, self.encoder.tokenize(unique_texts), strict=True))
        for h, tok in tokens.items():
            if len(tok.ids) <= SPECIAL_TOKENS:
                where = f"texts[{first_index[h]}]" if len(texts) > 1 else "text"
                raise EmptyTextError(f"{where} has nothing the encoder can read (no word, only marks)")

        # 3. which head version scores which text (production, canary share, shadow sample), then the
        # prediction cache for all of it in one round
        plan = plan_routes(models, unique_hashes, routes)
        started = time.perf_counter()
        cached_probs = self._cached_predictions(plan.jobs)
        stats.cache_seconds += time.perf_counter() - started
        answering = [(m, plan.answer[m][h], h) for m in models for h in unique_hashes]
        stats.prediction_hits = sum(h in cached_probs[key] for _, key, h in answering)
        stats.prediction_misses = len(answering) - stats.prediction_hits
        wanted = {key: [h for h in hs if h not in cached_probs[key]] for key, hs in plan.jobs.items()}
        need_embedding = list(dict.fromkeys(h for hs in wanted.values() for h in hs))

        # 4-5. embeddings: cache first, then encode the misses once
        occurrences = None if self.dedup else hashes
        self.faults.check("encode", [texts[first_index[h]] for h in need_embedding])
        embeddings, from_cache, fresh = self._embeddings(need_embedding, tokens, stats, occurrences)

        # 6. each head once on what is still missing; a candidate's failure never fails the request
        computed: dict[HeadKey, dict[str, np.ndarray]] = {}
        head_ms: dict[HeadKey, float] = {}
        failed: set[HeadKey] = set()
        for key, todo in wanted.items():
            if not todo:
                continue
            stage, head = plan.heads[key]
            matrix = np.stack([embeddings[h] for h in todo])
            started = time.perf_counter()
            if stage == PRODUCTION:
                self.faults.check("head", [texts[first_index[h]] for h in todo])
                probs = head.predict_proba(matrix)
            else:
                try:
                    probs = head.predict_proba(matrix)
                except Exception:
                    failed.add(key)
                    continue
            head_ms[key] = (time.perf_counter() - started) * 1000
            computed[key] = dict(zip(todo, probs, strict=True))
        stats.heads_seconds = sum(head_ms.values()) / 1000
        started = time.perf_counter()
        self._write_caches(fresh, computed)
        stats.cache_seconds += time.perf_counter() - started

        def probabilities(key: HeadKey, h: str) -> np.ndarray:
            return cached_probs[key][h] if h in cached_probs[key] else computed[key][h]

        predictions: dict[str, list[Prediction]] = {}
        for m in models:
            per_unique: list[Prediction] = []
            for h in unique_hashes:
                key = plan.answer[m][h]
                if key in failed:  # the canary failed here: production answers (it scored every text)
                    key = plan.production[m]
                stage, head = plan.heads[key]
                if head.labels is None:
                    raise TypeError(f"head {m!r} has no labels to answer with")
                hit = h in cached_probs[key]
                best = top_k(probabilities(key, h), head.labels, self.top)
                per_unique.append(
                    Prediction(
                        label=best[0]["label"],
                        label_id=best[0]["label_id"],
                        top=best,
                        cached=hit,
                        embedding_cached=hit or h in from_cache,
                        version=head.version,
                        stage=stage,
                    )
                )
            predictions[m] = [per_unique[u] for u in dd.inverse]
        stats.cache_errors = self._cache_errors() - errors_before
        cut = cut or [False] * len(texts)
        return BatchResult(
            predictions=predictions,
            versions={m: routes[m].production.version for m in models},
            encoder_version=self.encoder.version,
            truncated=[bool(c) or tokens[h].truncated for c, h in zip(cut, hashes, strict=True)],
            stats=stats,
            rollout=_observations(plan, probabilities, failed, head_ms, wanted),
            embeddings=embeddings,
            hashes=hashes,
        )

    # -- steps ---------------------------------------------------------------------------------------
    def _cached_predictions(
        self, jobs: Mapping[HeadKey, Sequence[str]]
    ) -> dict[HeadKey, dict[str, np.ndarray]]:
        if self.prediction_cache is None:
            return {key: {} for key in jobs}
        found = self.prediction_cache.get_many_multi({k: hs for k, hs in jobs.items() if hs})
        return {key: found.get(key, {}) for key in jobs}

    def _embeddings(
        self,
        hashes: Sequence[str],
        tokens: Mapping[str, TokensLike],
        stats: Stats,
        occurrences: Sequence[str] | None = None,
    ) -> tuple[dict[str, np.ndarray], set[str], dict[str, np.ndarray]]:
        """Embeddings of ``hashes`` (cached ones, then the misses encoded once each), which came from the
        cache, and the freshly encoded ones (for :meth:`_write_caches`).

        With ``occurrences`` (dedup off) every occurrence of a missing text is encoded, as a service
        without common-subexpression elimination would; results are the same, only the work differs.
        """
        embeddings: dict[str, np.ndarray] = {}
        if self.embedding_cache is not None and hashes:
            started = time.perf_counter()
            embeddings = self.embedding_cache.get_many(hashes)
            stats.cache_seconds += time.perf_counter() - started
        from_cache = set(embeddings)
        stats.embedding_hits = len(from_cache)
        misses = [h for h in hashes if h not in embeddings]
        fresh: dict[str, np.ndarray] = {}
        if misses:
            started = time.perf_counter()
            missing = set(misses)
            order = misses if occurrences is None else [h for h in occurrences if h in missing]
            vectors = self.encoder.encode_tokens([tokens[h].ids for h in order], self.encode_batch_size)
            stats.encode_seconds = time.perf_counter() - started
            stats.encoded = len(order)
            fresh = dict(zip(order, vectors, strict=True))
            embeddings.update(fresh)
        return embeddings, from_cache, fresh

    def _write_caches(
        self, embeddings: Mapping[str, np.ndarray], predictions: Mapping[HeadKey, Mapping[str, np.ndarray]]
    ) -> None:
        """Write what was computed to both caches at once: two tables' round trips overlapped rather than
        one after the other (billed time spent waiting; a failed back store is absorbed by the store)."""
        writes: list[Callable[[], None]] = []
        if self.embedding_cache is not None and embeddings:
            writes.append(functools.partial(self.embedding_cache.put_many, embeddings))
        if self.prediction_cache is not None and predictions:
            writes.append(functools.partial(self.prediction_cache.put_many_multi, predictions))
        if len(writes) < 2:
            for write in writes:
                write()
            return
        other = _cache_writer().submit(writes[1])
        try:
            writes[0]()
        finally:
            other.result()

    def _cache_errors(self) -> int:
        caches = (self.embedding_cache, self.prediction_cache)
        return sum(c.store.errors for c in caches if c is not None)


def _observations(
    plan: Plan,
    probabilities: Callable[[HeadKey, str], np.ndarray],
    failed: set[HeadKey],
    head_ms: Mapping[HeadKey, float],
    wanted: Mapping[HeadKey, Sequence[str]],
) -> list[Observation]:
    """Each candidate against production on the texts it scored: agreement (same label name, so a
    candidate whose label order differs is compared fairly), confidence, errors and head time."""
    found = []
    for model, key, hashes in plan.compare:
        stage, head = plan.heads[key]
        tally = Tally()
        if key in failed:
            tally.errors = len(hashes)
        else:
            prod_key = plan.production[model]
            prod_labels = plan.heads[prod_key][1].labels or []
            labels = head.labels or []
            for h in hashes:
                cand, prod = probabilities(key, h), probabilities(prod_key, h)
                c, p = int(np.argmax(cand)), int(np.argmax(prod))
                tally.compared += 1
                tally.agreed += labels[c] == prod_labels[p] if labels and prod_labels else c == p
                tally.candidate_confidence += float(cand[c])
                tally.production_confidence += float(prod[p])
            tally.answered = len(hashes) if stage != "shadow" else 0
            computed = len(wanted.get(key, ()))
            if computed:
                tally.candidate_head_ms = head_ms.get(key, 0.0)
                per_text = head_ms.get(prod_key, 0.0) / max(1, len(wanted.get(prod_key, ())))
                tally.production_head_ms = per_text * computed
        found.append(
            Observation(model=model, stage=stage, version=head.version, epoch=plan.epochs[key], tally=tally)
        )
    return found


#: A text every healthy model classifies: when nothing could be served, a pass over it tells a broken
#: model (a server fault) from inputs that fail on their own.
PROBE_TEXT = "probe"


def predict_isolating(
    service: InferenceService, texts: Sequence[CheckedText], models: Sequence[str]
) -> BatchResult:
    """A synchronous request is one unit: its answer, or :class:`UnprocessableTextError` (HTTP 422) naming
    the texts that fail on their own while the pipeline serves others (found by bisection).

    Input errors and transient failures propagate as they are (400 / 503); a failure that no text can be
    blamed for (the probe fails too) propagates as the server fault it is.
    """
    values, cut = [t.text for t in texts], [t.cut for t in texts]
    try:
        return service.predict(values, models, cut=cut)
    except InvalidInputError:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise
        fault = exc
    iso = isolate(
        len(values),
        lambda group: service.predict([values[i] for i in group], models),
        probe=lambda: service.predict([PROBE_TEXT], models),
    )
    if not iso.failed or iso.retry:
        raise fault
    where: Callable[[int], str] = (lambda i: f"texts[{i}]") if len(values) > 1 else (lambda i: "text")
    raise UnprocessableTextError(
        "could not classify "
        + "; ".join(f"{where(i)} ({type(e).__name__}: {e})" for i, e in sorted(iso.failed.items()))
    )
