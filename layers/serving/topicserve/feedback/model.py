"""Label feedback, pure: what a caller may send, what it joins to, and the sums it adds.

A feedback item names one served answer and its true label:

* ``{"text": ..., "label": ...}``: a text answered synchronously (``POST /v1/predict/{model}``) or queued;
  joined through the served-answers ledger (:mod:`topicserve.feedback.ledger`) by the hash of its
  normalised text, for every model that answered it;
* ``{"batch_id": ..., "request_id": ..., "label": ...}``: one request of a queued batch, joined to its
  stored result (every model it asked for).

A synchronous answer carries no request id, so a bare ``request_id`` is refused with a message saying what
to send instead. Each joined item adds to two kinds of sums, both plain counters (so any number of calls
can add them with DynamoDB ``ADD``):

* :class:`QualitySums` per (model, version, window): labelled answers, correct ones, per confidence bin
  the count, the correct count and the confidence sum, and per (true, predicted) class pair its mistakes:
  accuracy with its interval, the expected calibration error (ECE) and the most-confused classes are read
  from these;
* the gate's paired counters (``labelled``, ``candidate_only_correct``, ``production_only_correct``) on
  the rollout record of a candidate (canary or shadow) that scored the text beside production.

The window is the one the answer was *served* in, and the version the one that answered: feedback that
arrives hours late still counts where it belongs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from topicserve.errors import InvalidInputError, InvalidRequestError, TooManyTextsError
from topicserve.requests import _ID, Rejected, load_json_object
from topicserve.results import COMPARED_KEY, EPOCH_KEY
from topicserve.rollout.routing import CANARY, PRODUCTION, SHADOW
from topicserve.rollout.tally import Tally
from topicserve.text import text_hash, validate_text

#: the 20 Newsgroups classes every head answers with (sklearn's ``target_names``, in its order)
LABELS: tuple[str, ...] = (
    "alt.atheism",
    "comp.graphics",
    "comp.os.ms-windows.misc",
    "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware",
    "comp.windows.x",
    "misc.forsale",
    "rec.autos",
    "rec.motorcycles",
    "rec.sport.baseball",
    "rec.sport.hockey",
    "sci.crypt",
    "sci.electronics",
    "sci.med",
    "sci.space",
    "soc.religion.christian",
    "talk.politics.guns",
    "talk.politics.mideast",
    "talk.politics.misc",
    "talk.religion.misc",
)
MAX_ITEMS = 1_000
BINS = 10  # confidence bins of width 0.1, for the calibration error
_LABELS = frozenset(LABELS)
_LABEL_IDS = {label: i for i, label in enumerate(LABELS)}
_CONFUSION = re.compile(r"x([0-9]{1,2})_([0-9]{1,2})")
_ITEM_KEYS = frozenset({"text", "batch_id", "request_id", "label"})


class UnknownFeedbackIdError(InvalidInputError):
    """A feedback item names nothing that was served (or its record expired)."""


# -- the request ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeedbackItem:
    """One valid item: its position, its true label, and what it points at (a text hash or a request)."""

    index: int
    label: str
    text_hash: str | None = None
    batch_id: str | None = None
    request_id: str | None = None
    text: str | None = field(default=None, compare=False, repr=False)  # normalised, for the label archive

    @property
    def key(self) -> str:
        """The idempotency key: the same text, or the same batch request, counts once."""
        if self.text_hash is not None:
            return f"t#{self.text_hash}"
        return f"b#{self.batch_id}#{self.request_id}"

    @property
    def ref(self) -> str:
        """How the response names the item (never the text itself)."""
        return self.key if self.text_hash is None else f"t#{self.text_hash[:16]}"


@dataclass
class ParsedFeedback:
    items: list[FeedbackItem] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    duplicates: int = 0  # items naming the same answer as an earlier item of this call


def parse_feedback(body: str | bytes | None, *, max_bytes: int, max_chars: int) -> ParsedFeedback:
    """``{"items": [...]}`` -> valid items and per-item rejections. A body that is not such an object, an
    empty list or more than :data:`MAX_ITEMS` items is refused as a whole (HTTP 4xx)."""
    return parse_feedback_data(load_json_object(body, max_bytes=max_bytes), max_chars=max_chars)


def parse_feedback_data(data: dict[str, Any], *, max_chars: int) -> ParsedFeedback:
    """:func:`parse_feedback` of an already decoded body (a queued feedback message's ``feedback``)."""
    extra = set(data) - {"items"}
    if extra:
        raise InvalidRequestError(f"unknown field(s) {sorted(extra)}; send {{'items': [...]}}")
    items = data.get("items")
    if not isinstance(items, list):
        raise InvalidRequestError(f"items must be a list of objects, got {type(items).__name__}")
    if not items:
        raise InvalidRequestError("items is an empty list")
    if len(items) > MAX_ITEMS:
        raise TooManyTextsError(f"{len(items)} feedback items in one request; the limit is {MAX_ITEMS}")
    parsed, seen = ParsedFeedback(), set()
    for i, raw in enumerate(items):
        try:
            item = parse_item(raw, i, max_chars=max_chars)
        except InvalidInputError as exc:
            parsed.rejected.append(Rejected(i, _raw_id(raw, i), exc))
            continue
        if item.key in seen:
            parsed.duplicates += 1
            continue
        seen.add(item.key)
        parsed.items.append(item)
    return parsed


def parse_item(raw: object, i: int, *, max_chars: int) -> FeedbackItem:
    where = f"items[{i}]"
    if not isinstance(raw, dict):
        raise InvalidRequestError(f"{where} must be an object, got {type(raw).__name__}")
    extra = set(raw) - _ITEM_KEYS
    if extra:
        raise InvalidRequestError(f"{where} has unknown field(s) {sorted(extra)}")
    label = raw.get("label")
    if not isinstance(label, str):
        raise InvalidRequestError(f"{where}.label must be a string, got {type(label).__name__}")
    if label not in _LABELS:
        raise InvalidRequestError(f"{where}.label {label[:80]!r} is not one of the {len(LABELS)} classes")
    has_text, has_batch, has_request = ("text" in raw), ("batch_id" in raw), ("request_id" in raw)
    if has_text and (has_batch or has_request):
        raise InvalidRequestError(f"{where}: send either text or batch_id + request_id, not both")
    if has_text:
        checked = validate_text(raw["text"], max_chars=max_chars, where=f"{where}.text")
        return FeedbackItem(i, label, text_hash=text_hash(checked.text), text=checked.text)
    if has_request and not has_batch:
        raise InvalidRequestError(
            f"{where}: request_id needs its batch_id (a synchronous answer has no id: send its text)"
        )
    if not has_batch:
        raise InvalidRequestError(f"{where} names no answer: send text, or batch_id + request_id")
    batch_id, request_id = raw["batch_id"], raw.get("request_id")
    for name, value in (("batch_id", batch_id), ("request_id", request_id)):
        if not isinstance(value, str) or not _ID.fullmatch(value):
            raise InvalidRequestError(f"{where}.{name} must be a string matching {_ID.pattern}")
    return FeedbackItem(i, label, batch_id=batch_id, request_id=request_id)


def _raw_id(raw: object, i: int) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("request_id"), str) and _ID.fullmatch(raw["request_id"]):
        return str(raw["request_id"])
    return f"~{i}"


# -- what was served -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServedAnswer:
    """One head version's answer to one text: the answering one, or one compared with it."""

    version: str
    stage: str  # production | canary | shadow
    label: str
    confidence: float  # its top probability
    answered: bool = False  # this answer went back to the caller
    epoch: int = 0  # a candidate's stage epoch (its rollout record), 0 for production

    def to_list(self) -> list[Any]:
        return [
            self.version,
            self.stage,
            self.label,
            round(self.confidence, 4),
            int(self.answered),
            self.epoch,
        ]

    @classmethod
    def from_list(cls, row: Sequence[Any]) -> ServedAnswer:
        version, stage, label, confidence, answered, epoch = row
        return cls(str(version), str(stage), str(label), float(confidence), bool(answered), int(epoch))


@dataclass(frozen=True)
class Served:
    """What one model served for one text or request, in the window it was served."""

    model: str
    window: str
    answers: tuple[ServedAnswer, ...]

    @property
    def answering(self) -> ServedAnswer | None:
        return next((a for a in self.answers if a.answered), None)

    def of_stage(self, stage: str) -> ServedAnswer | None:
        return next((a for a in self.answers if a.stage == stage), None)


@dataclass(frozen=True)
class Joined:
    """A feedback item joined to what one model served."""

    item: FeedbackItem
    served: Served


def comparison_fields(served: Served) -> dict[str, Any]:
    """What a queued request's stored answer keeps for label feedback beside what the caller sees: the
    answers a candidate was compared with on that text (production's beside a canary's answer, a shadow's
    beside production's; :class:`ServedAnswer` rows) and the answering candidate's epoch, so feedback by
    ``batch_id + request_id`` adds to the gate's paired counters as feedback by text does. Nothing when
    no candidate was compared (the usual case: no cost outside a rollout); ``GET /v1/batches`` leaves
    these keys out (:data:`topicserve.results.PRIVATE_ANSWER_KEYS`)."""
    others = [a.to_list() for a in served.answers if not a.answered]
    if not others:
        return {}
    answering = served.answering
    fields: dict[str, Any] = {COMPARED_KEY: others}
    if answering is not None and answering.epoch:
        fields[EPOCH_KEY] = answering.epoch
    return fields


def served_from_result(model: str, window: str, result: Mapping[str, Any]) -> Served | None:
    """A stored batch result's answer of ``model``: the answering version, and the versions compared with
    it on that text when the batcher stored them (:func:`comparison_fields`), so batch feedback adds to
    live accuracy and, during a rollout, to the gate's paired counters."""
    answer = result.get("models", {}).get(model) if result.get("status") == "ok" else None
    if not isinstance(answer, dict):
        return None
    top = answer.get("top") or [{}]
    epoch = answer.get(EPOCH_KEY, 0)
    served = ServedAnswer(
        version=str(answer.get("model_version", "")),
        stage=str(answer.get("stage", PRODUCTION)),
        label=str(answer.get("label", "")),
        confidence=float(top[0].get("probability", 0.0)),
        answered=True,
        epoch=epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else 0,
    )
    compared = []
    for row in answer.get(COMPARED_KEY) or []:
        try:
            compared.append(replace(ServedAnswer.from_list(row), answered=False))
        except (TypeError, ValueError):
            continue  # not a row this code wrote: the answer still counts, without the comparison
    return Served(model, window, (served, *compared))


# -- the sums --------------------------------------------------------------------------------------------
QualityKey = tuple[str, str, str]  # window, model, version
RecordKey = tuple[str, str, str, int]  # model, stage, version, epoch (topicserve.rollout.records)


def confidence_bin(confidence: float) -> int:
    return min(BINS - 1, max(0, int(confidence * BINS)))


@dataclass
class QualitySums:
    """Labelled answers of one (model, version, window), as counters: accuracy and calibration are ratios
    of them, and sums over windows or calls are sums of them."""

    n: int = 0
    correct: int = 0
    bin_n: list[int] = field(default_factory=lambda: [0] * BINS)
    bin_correct: list[int] = field(default_factory=lambda: [0] * BINS)
    bin_conf: list[float] = field(default_factory=lambda: [0.0] * BINS)
    stage: str = ""  # the stage that answered (the last one seen: a version's stage can change)
    # (true class id, predicted class id) -> count, the mistakes only (ids in LABELS)
    confusion: dict[tuple[int, int], int] = field(default_factory=dict)

    def add(self, answer: ServedAnswer, label: str) -> None:
        b, right = confidence_bin(answer.confidence), answer.label == label
        self.n += 1
        self.correct += right
        self.bin_n[b] += 1
        self.bin_correct[b] += right
        self.bin_conf[b] += answer.confidence
        self.stage = answer.stage
        if not right and answer.label in _LABEL_IDS:
            pair = (_LABEL_IDS[label], _LABEL_IDS[answer.label])
            self.confusion[pair] = self.confusion.get(pair, 0) + 1

    def add_sums(self, other: QualitySums) -> None:
        self.n += other.n
        self.correct += other.correct
        for b in range(BINS):
            self.bin_n[b] += other.bin_n[b]
            self.bin_correct[b] += other.bin_correct[b]
            self.bin_conf[b] += other.bin_conf[b]
        for pair, count in other.confusion.items():
            self.confusion[pair] = self.confusion.get(pair, 0) + count
        self.stage = other.stage or self.stage

    def to_values(self) -> dict[str, float]:
        values: dict[str, float] = {"n": self.n, "correct": self.correct}
        for b in range(BINS):
            if self.bin_n[b]:
                values |= {f"n{b}": self.bin_n[b], f"k{b}": self.bin_correct[b]}
                values[f"s{b}"] = round(self.bin_conf[b], 6)
        values |= {f"x{t}_{p}": count for (t, p), count in self.confusion.items()}
        return values

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> QualitySums:
        def num(name: str) -> float:
            return float(item.get(name, {}).get("N", "0"))

        return cls(
            n=int(num("n")),
            correct=int(num("correct")),
            bin_n=[int(num(f"n{b}")) for b in range(BINS)],
            bin_correct=[int(num(f"k{b}")) for b in range(BINS)],
            bin_conf=[num(f"s{b}") for b in range(BINS)],
            stage=item.get("stage", {}).get("S", ""),
            confusion={
                (int(t), int(p)): int(num(k))
                for k in item
                if (m := _CONFUSION.fullmatch(k)) is not None
                for t, p in [m.groups()]
            },
        )

    def summary(self, z: float = 1.96) -> dict[str, Any]:
        """Accuracy with its Wilson interval (95 % by default) and the expected calibration error."""
        low, high = wilson(self.correct, self.n, z)
        return {
            "labelled": self.n,
            "correct": self.correct,
            "accuracy": round(self.correct / self.n, 4) if self.n else None,
            "accuracy_low": round(low, 4) if self.n else None,
            "accuracy_high": round(high, 4) if self.n else None,
            "ece": round(self.ece(), 4) if self.n else None,
            "stage": self.stage or None,
            "most_confused": self.most_confused(),
        }

    def most_confused(self, top: int = 3) -> list[dict[str, Any]]:
        """The ``top`` (true, predicted) pairs the version got wrong most often."""
        ranked = sorted(self.confusion.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        return [{"true": LABELS[t], "predicted": LABELS[p], "count": c} for (t, p), c in ranked]

    def ece(self) -> float:
        """Expected calibration error: sum over bins of (bin share) x |accuracy - mean confidence|."""
        if not self.n:
            return 0.0
        return sum(abs(self.bin_correct[b] - self.bin_conf[b]) / self.n for b in range(BINS) if self.bin_n[b])


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (good at small n and near 0 or 1)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class FeedbackSums:
    """What one call adds: quality per (window, model, version), gate counters per candidate record."""

    quality: dict[QualityKey, QualitySums] = field(default_factory=dict)
    gate: dict[RecordKey, Tally] = field(default_factory=dict)


def aggregate(joined: Iterable[Joined]) -> FeedbackSums:
    """Sum the joined items: the answering version's quality, and for a candidate that scored the text
    beside production, the paired outcome (only one right, or both / neither: the discordant pairs are
    what the paired-accuracy test reads)."""
    sums = FeedbackSums()
    for j in joined:
        answer, label = j.served.answering, j.item.label
        if answer is not None:
            key = (j.served.window, j.served.model, answer.version)
            sums.quality.setdefault(key, QualitySums()).add(answer, label)
        production = j.served.of_stage(PRODUCTION)
        if production is None:
            continue
        for stage in (CANARY, SHADOW):
            candidate = j.served.of_stage(stage)
            if candidate is None or candidate.version == production.version:
                continue
            tally = sums.gate.setdefault((j.served.model, stage, candidate.version, candidate.epoch), Tally())
            tally.labelled += 1
            cand_right, prod_right = candidate.label == label, production.label == label
            tally.candidate_only_correct += cand_right and not prod_right
            tally.production_only_correct += prod_right and not cand_right
    return sums
