"""The inference pipeline shared by the synchronous predict functions, the SQS batcher and the worker.

For a batch of texts and a set of heads it does the least work the caches allow, in named steps:

1. :meth:`~InferenceService._distinct`: hash every (already validated, normalised) text and deduplicate:
   each distinct text is handled once (common-subexpression elimination of the encoder pass);
2. :meth:`~InferenceService._tokenize`: tokenise each distinct text once (bounded prefix): that says
   whether the encoder reads all of it (the ``truncated`` flag) and refuses texts with nothing to read;
   texts whose token ids are identical (case, accents, what lies past the last token read) are one text
   from here on;
3. route: which head version scores which text (production, a canary's share, a shadow's sample);
4. :meth:`~InferenceService._lookup`: one cache record per distinct token sequence, the in-process LRU
   first and the shared tier for the rest, in one round (a record holds the embedding and the answers);
5. :meth:`~InferenceService._encode`: encode only the texts some head still needs and no record had, each
   token sequence once (the ``encode_rows`` strategy: :func:`topicserve.batching.distinct_rows`);
6. :meth:`~InferenceService._score`: each head once on the stacked embeddings it still needs;
7. :meth:`~InferenceService._write_back`: records that gained something go to the LRU, and to the shared
   tier where admission says the write pays (a text seen again in this environment).

Nothing here knows about Lambda, HTTP, SQS or DynamoDB: the cache is injected, the encoder and heads are
duck-typed, and the result carries counters that the handlers turn into metrics and logs. Nor about the
test stacks' chaos switches: they wrap the encoder and the heads (:func:`topicserve.faults.with_test_faults`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from topicserve.batching import EncodeRows, dedupe, distinct_rows
from topicserve.cache.admission import Doorkeeper, ReadGate
from topicserve.cache.keys import EncoderConfig, answer_id, tokens_hash
from topicserve.cache.record import EMBEDDING_FORMAT, Answer, TextRecord
from topicserve.cache.store import CacheStore
from topicserve.cache.typed import Lookup, RecordCache
from topicserve.catalogue import check_models
from topicserve.errors import (
    EmptyTextError,
    InvalidInputError,
    UnprocessableTextError,
    is_transient,
)
from topicserve.isolation import isolate
from topicserve.protocols import EncoderLike, HeadLike, TokensLike
from topicserve.rollout.routing import PRODUCTION, HeadKey, Plan, Route, plan_routes
from topicserve.rollout.tally import Observation, Tally
from topicserve.text import NORMALISER_VERSION, CheckedText, text_hash

__all__ = ["EncoderLike", "HeadLike", "InferenceService", "Route", "TokensLike"]

#: [CLS] and [SEP]: a text with no more tokens than these gives the encoder nothing to read
SPECIAL_TOKENS = 2


@dataclass(frozen=True)
class Prediction:
    """One head's answer for one text."""

    label: str
    label_id: int
    top: list[dict[str, Any]]
    cached: bool  # served from a cache record's answer
    embedding_cached: bool  # embedding came from a cache record (or the answer did, so no encoding at all)
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
    cache_reads: int = 0  # records asked of the shared tier (each a billed read)
    cache_writes: int = 0  # records written to the shared tier (each a billed write)
    encode_seconds: float = 0.0
    heads_seconds: float = 0.0
    cache_seconds: float = 0.0

    @property
    def duplicates(self) -> int:
        return self.texts - self.unique_texts

    @classmethod
    def total(cls, parts: Iterable[Stats]) -> Stats:
        """Every counter summed (the passes of one batch)."""
        total = cls()
        for part in parts:
            for name, value in vars(part).items():
                setattr(total, name, getattr(total, name) + value)
        return total


@dataclass
class BatchResult:
    predictions: dict[str, list[Prediction]]  # model name -> one Prediction per input text, in input order
    versions: dict[str, str]  # model name -> its production version (each Prediction names its own)
    encoder_version: str
    truncated: list[bool] = field(default_factory=list)  # per input text: the encoder read only its start
    stats: Stats = field(default_factory=Stats)
    rollout: list[Observation] = field(default_factory=list)  # what each canary / shadow did here
    # text hash -> embedding, for the distinct texts this call had one for (computed or from a cache
    # record; none for answer hits): monitoring samples these, at no extra cost
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    hashes: list[str] = field(default_factory=list)  # per input text, its text hash


def top_k(answer: Answer, labels: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"label": labels[i], "label_id": int(i), "probability": round(float(p), 6)}
        for i, p in zip(answer.ids, answer.probabilities, strict=True)
    ]


class RouteSource(Protocol):
    """Where the service reads each model's routing, once per call (the rollout router refreshes it)."""

    def current(self) -> Mapping[str, Route]: ...


class StaticRoutes:
    """Production heads only, fixed: tests, benchmarks, and any caller without a registry."""

    def __init__(self, heads: Mapping[str, HeadLike]) -> None:
        self.routes = {m: Route(head) for m, head in heads.items()}

    def current(self) -> Mapping[str, Route]:
        return self.routes


def encoder_config(encoder: EncoderLike, batch_size: int) -> EncoderConfig:
    """What this encoder's embeddings depend on, as the cache keys name it."""
    return EncoderConfig(
        encoder=encoder.version,
        tokenizer=encoder.tokenizer_version,
        max_length=encoder.max_length,
        batch_size=batch_size,
        normaliser=NORMALISER_VERSION,
        embedding_format=EMBEDDING_FORMAT,
    )


@dataclass
class _Distinct:
    """Step 1-2: the distinct texts of a call, and what the encoder reads of each."""

    hashes: list[str]  # per input text
    unique: list[str]  # distinct text hashes, first-seen order
    inverse: list[int]  # input position -> index in unique
    first: dict[str, int]  # text hash -> its first input position
    tokens: dict[str, TokensLike] = field(default_factory=dict)  # text hash -> tokens
    token_hash: dict[str, str] = field(default_factory=dict)  # text hash -> tokens_hash(ids)


@dataclass
class _Work:
    """Steps 4-6: what the records held and what was computed, by text hash."""

    plan: Plan
    lookup: Lookup
    cached: dict[HeadKey, dict[str, Answer]]  # answers found in records
    wanted: dict[HeadKey, list[str]]  # texts each head version must still score
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    from_cache: set[str] = field(default_factory=set)  # text hashes whose embedding came from a record
    fresh: set[str] = field(default_factory=set)  # token hashes encoded in this call
    computed: dict[HeadKey, dict[str, Answer]] = field(default_factory=dict)
    failed: set[HeadKey] = field(default_factory=set)  # candidate heads that raised
    head_ms: dict[HeadKey, float] = field(default_factory=dict)

    def answer(self, key: HeadKey, h: str) -> Answer:
        return self.cached[key][h] if h in self.cached[key] else self.computed[key][h]


class InferenceService:
    def __init__(
        self,
        encoder: EncoderLike,
        heads: Mapping[str, HeadLike] | RouteSource,
        *,
        cache_store: CacheStore | None = None,
        doorkeeper: Doorkeeper | None = None,
        read_gate: ReadGate | None = None,
        use_answers: bool = True,
        top: int = 3,
        encode_batch_size: int = 1,  # Settings.encode_batch_size says why
        encode_rows: EncodeRows = distinct_rows,  # every_row: the benchmarks' no-dedup baseline only
    ) -> None:
        self.encoder = encoder
        self.routes: RouteSource = StaticRoutes(heads) if isinstance(heads, Mapping) else heads
        self.top = top
        self._encode_batch_size = encode_batch_size
        self.cache = (
            RecordCache(
                cache_store,
                encoder_config(encoder, encode_batch_size),
                dim=int(getattr(encoder, "dim", 384)),
                doorkeeper=doorkeeper,
                read_gate=read_gate,
                use_answers=use_answers,
            )
            if cache_store is not None
            else None
        )
        self.encode_rows = encode_rows

    @property
    def encode_batch_size(self) -> int:
        """Texts per encoder call; fixed for a service's life, because its cache keys name it."""
        return self._encode_batch_size

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
        errors_before = self._cache_errors()
        d = self._distinct(texts)
        stats.unique_texts = len(d.unique)
        self._tokenize(texts, d)
        work = self._lookup(models, routes, d, stats)
        self._encode(d, work, stats)
        self._score(work)
        stats.heads_seconds = sum(work.head_ms.values()) / 1000
        self._write_back(d, work, stats)
        stats.cache_errors = self._cache_errors() - errors_before
        cut = cut or [False] * len(texts)
        return BatchResult(
            predictions=self._predictions(models, d, work),
            versions={m: routes[m].production.version for m in models},
            encoder_version=self.encoder.version,
            truncated=[bool(c) or d.tokens[h].truncated for c, h in zip(cut, d.hashes, strict=True)],
            stats=stats,
            rollout=_observations(work),
            embeddings=work.embeddings,
            hashes=d.hashes,
        )

    # -- steps ---------------------------------------------------------------------------------------
    def _distinct(self, texts: Sequence[str]) -> _Distinct:
        hashes = [text_hash(t) for t in texts]
        dd = dedupe(hashes)
        first = {h: i for i, h in reversed(list(enumerate(hashes)))}
        return _Distinct(hashes, list(dd.unique), list(dd.inverse), first)

    def _tokenize(self, texts: Sequence[str], d: _Distinct) -> None:
        unique_texts = [texts[d.first[h]] for h in d.unique]
        d.tokens = dict(zip(d.unique, self.encoder.tokenize(unique_texts), strict=True))
        for h, tok in d.tokens.items():
            if len(tok.ids) <= SPECIAL_TOKENS:
                where = f"texts[{d.first[h]}]" if len(texts) > 1 else "text"
                raise EmptyTextError(f"{where} has nothing the encoder can read (no word, only marks)")
        d.token_hash = {h: tokens_hash(tok.ids) for h, tok in d.tokens.items()}

    def _lookup(
        self, models: Sequence[str], routes: Mapping[str, Route], d: _Distinct, stats: Stats
    ) -> _Work:
        """Route every text, then read one record per distinct token sequence (one round)."""
        plan = plan_routes(models, d.unique, routes)
        lookup = Lookup()
        if self.cache is not None:
            lookup = self.cache.get_many(list(dict.fromkeys(d.token_hash.values())))
            stats.cache_reads = lookup.shared_reads
        records = {h: lookup.records.get(d.token_hash[h]) for h in d.unique}
        cached: dict[HeadKey, dict[str, Answer]] = {}
        for key, hs in plan.jobs.items():
            name = answer_id(*key)
            found = cached.setdefault(key, {})
            for h in hs:
                record = records[h]
                answer = record.answers.get(name) if record is not None else None
                if answer is not None and len(answer.ids) >= min(self.top, _classes(plan, key)):
                    found[h] = Answer(answer.ids[: self.top], answer.probabilities[: self.top])
        answering = [(plan.answer[m][h], h) for m in models for h in d.unique]
        stats.prediction_hits = sum(h in cached[key] for key, h in answering)
        stats.prediction_misses = len(answering) - stats.prediction_hits
        wanted = {key: [h for h in hs if h not in cached[key]] for key, hs in plan.jobs.items()}
        work = _Work(plan, lookup, cached, wanted)
        # a text some tree head still has to answer is encoded afresh (topicserve.heads.Head.exact_embeddings)
        exact = {
            h
            for key, hs in wanted.items()
            if getattr(plan.heads[key][1], "exact_embeddings", False)
            for h in hs
        }
        for h, record in records.items():
            if record is not None and record.embedding is not None and h not in exact:
                work.embeddings[h] = record.embedding
                work.from_cache.add(h)
        return work

    def _encode(self, d: _Distinct, work: _Work, stats: Stats) -> None:
        """Encode the texts some head still needs and no record had: the rows ``encode_rows`` names for
        their occurrences (each token sequence once; every occurrence for the benchmarks' baseline)."""
        need = list(dict.fromkeys(h for hs in work.wanted.values() for h in hs))
        stats.embedding_hits = sum(h in work.from_cache for h in need)
        misses = [h for h in need if h not in work.embeddings]
        if not misses:
            return
        by_tokens = {d.token_hash[h]: h for h in misses}
        missing = set(misses)
        order = self.encode_rows([d.token_hash[h] for h in d.hashes if h in missing])
        started = time.perf_counter()
        vectors = self.encoder.encode_tokens(
            [d.tokens[by_tokens[t]].ids for t in order], self.encode_batch_size
        )
        stats.encode_seconds = time.perf_counter() - started
        stats.encoded = len(order)
        fresh = dict(zip(order, vectors, strict=True))
        work.fresh = set(fresh)
        for h in misses:
            work.embeddings[h] = fresh[d.token_hash[h]]

    def _score(self, work: _Work) -> None:
        """Each head version once on what it still needs; a candidate's failure never fails the request."""
        for key, todo in work.wanted.items():
            if not todo:
                continue
            stage, head = work.plan.heads[key]
            matrix = np.stack([work.embeddings[h] for h in todo])
            started = time.perf_counter()
            if stage == PRODUCTION:
                probs = head.predict_proba(matrix)
            else:
                try:
                    probs = head.predict_proba(matrix)
                except Exception:
                    work.failed.add(key)
                    continue
            work.head_ms[key] = (time.perf_counter() - started) * 1000
            work.computed[key] = {
                h: Answer.from_probabilities(p, self.top) for h, p in zip(todo, probs, strict=True)
            }

    def _write_back(self, d: _Distinct, work: _Work, stats: Stats) -> None:
        """Records that gained an embedding or an answer go to the LRU; to the shared tier go the repeated
        ones among them, and repeated ones this environment has that the shared tier lacks (a failed shared
        write is absorbed and counted by the store)."""
        if self.cache is None:
            return
        gained: dict[str, TextRecord] = {t: work.lookup.records[t] for t in work.lookup.unshared}
        for key, answers in work.computed.items():
            for h, answer in answers.items():
                t = d.token_hash[h]
                record = gained.get(t) or work.lookup.records.get(t) or TextRecord()
                gained[t] = record.merged(work.embeddings.get(h), {answer_id(*key): answer})
        if not gained:
            return
        started = time.perf_counter()
        stats.cache_writes = self.cache.put_many(gained, admitted=work.lookup.repeated & set(gained))
        stats.cache_seconds += time.perf_counter() - started

    def _predictions(self, models: Sequence[str], d: _Distinct, work: _Work) -> dict[str, list[Prediction]]:
        plan = work.plan
        predictions: dict[str, list[Prediction]] = {}
        for m in models:
            per_unique: list[Prediction] = []
            for h in d.unique:
                key = plan.answer[m][h]
                if key in work.failed:  # the canary failed here: production answers (it scored every text)
                    key = plan.production[m]
                stage, head = plan.heads[key]
                if head.labels is None:
                    raise TypeError(f"head {m!r} has no labels to answer with")
                hit = h in work.cached[key]
                best = top_k(work.answer(key, h), head.labels)
                per_unique.append(
                    Prediction(
                        label=best[0]["label"],
                        label_id=best[0]["label_id"],
                        top=best,
                        cached=hit,
                        embedding_cached=hit or h in work.from_cache,
                        version=head.version,
                        stage=stage,
                    )
                )
            predictions[m] = [per_unique[u] for u in d.inverse]
        return predictions

    def _cache_errors(self) -> int:
        return self.cache.store.errors if self.cache is not None else 0


def _classes(plan: Plan, key: HeadKey) -> int:
    labels = plan.heads[key][1].labels
    return len(labels) if labels else 1


def _observations(work: _Work) -> list[Observation]:
    """Each candidate against production on the texts it scored: agreement (same label name, so a
    candidate whose label order differs is compared fairly), confidence, errors and head time."""
    plan, found = work.plan, []
    for model, key, hashes in plan.compare:
        stage, head = plan.heads[key]
        tally = Tally()
        answers: dict[str, tuple[str, float, str, float]] = {}
        if key in work.failed:
            tally.errors = len(hashes)
        else:
            prod_key = plan.production[model]
            prod_labels = plan.heads[prod_key][1].labels or []
            labels = head.labels or []
            for h in hashes:
                cand, prod = work.answer(key, h), work.answer(prod_key, h)
                c, p = cand.label_id, prod.label_id
                tally.compared += 1
                tally.agreed += labels[c] == prod_labels[p] if labels and prod_labels else c == p
                tally.candidate_confidence += cand.confidence
                tally.production_confidence += prod.confidence
                if labels and prod_labels:
                    answers[h] = (labels[c], cand.confidence, prod_labels[p], prod.confidence)
            tally.answered = len(hashes) if stage != "shadow" else 0
            computed = len(work.wanted.get(key, ()))
            if computed:
                tally.candidate_head_ms = work.head_ms.get(key, 0.0)
                per_text = work.head_ms.get(prod_key, 0.0) / max(1, len(work.wanted.get(prod_key, ())))
                tally.production_head_ms = per_text * computed
        found.append(
            Observation(
                model=model,
                stage=stage,
                version=head.version,
                epoch=plan.epochs[key],
                tally=tally,
                answers=answers,
            )
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
