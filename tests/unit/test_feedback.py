"""Label feedback: parsing, the served-answers ledger, the join, idempotency and the sums (moto)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers import RESULTS_KEYS, create_table
from tests.unit.conftest import FakeEncoder, FakeHead
from tests.unit.test_rollout import ROLLOUT_KEYS, Fixed, Permuted
from topicserve.batcher import process_records
from topicserve.catalogue import MODEL_NAMES
from topicserve.errors import (
    BackendUnavailableError,
    InvalidInputError,
    InvalidRequestError,
    TooManyTextsError,
)
from topicserve.feedback.ledger import ServedLedger, ledger_item, sampled, served_entries
from topicserve.feedback.model import (
    LABELS,
    MAX_ITEMS,
    Joined,
    QualitySums,
    Served,
    ServedAnswer,
    aggregate,
    parse_feedback,
    parse_item,
    served_from_result,
    wilson,
)
from topicserve.feedback.quality import quality_lines, quality_report, references_from_metrics
from topicserve.feedback.store import FeedbackStore, submit_feedback
from topicserve.monitoring.capture import Capture, MonitorStore
from topicserve.requests import NothingValidError, QueuedChunk, QueuedRequest
from topicserve.results import PRIVATE_ANSWER_KEYS, ResultChunk, ResultsStore
from topicserve.rollout.records import RolloutStore
from topicserve.rollout.routing import Route
from topicserve.service import InferenceService
from topicserve.settings import Settings
from topicserve.text import text_hash

TEXTS = [f"document number {i} about things" for i in range(200)]
MONITOR_KEYS = [("pk", "S", "HASH"), ("sk", "S", "RANGE")]


def body(items: Any) -> str:
    return json.dumps({"items": items})


def parse(items: Any) -> Any:
    return parse_feedback(body(items), max_bytes=5_000_000, max_chars=10_000)


# -- parsing -----------------------------------------------------------------------------------------
def test_valid_items_and_per_item_rejections() -> None:
    parsed = parse(
        [
            {"text": "  a text  ", "label": "sci.space"},
            {"batch_id": "b1", "request_id": "r1", "label": "rec.autos"},
            {"text": "a text", "label": "sci.space"},  # the same answer again: counted once
            {"text": "x", "label": "no.such.group"},
            {"text": 42, "label": "sci.space"},
            {"request_id": "r1", "label": "sci.space"},
            {"label": "sci.space"},
            {"text": "x", "batch_id": "b", "request_id": "r", "label": "sci.space"},
            {"batch_id": "b1", "request_id": "bad id!", "label": "sci.space"},
            {"text": "x", "label": 3},
            ["not", "an", "object"],
            {"text": "x", "label": "sci.space", "extra": 1},
        ]
    )
    assert [(i.index, i.key) for i in parsed.items] == [(0, f"t#{text_hash('a text')}"), (1, "b#b1#r1")]
    assert parsed.duplicates == 1
    messages = {r.index: r.error for r in parsed.rejected}
    assert sorted(messages) == list(range(3, 12))
    assert "not one of the 20 classes" in str(messages[3])
    assert "must be a string" in str(messages[4])
    assert "needs its batch_id" in str(messages[5])
    assert "names no answer" in str(messages[6])
    assert "not both" in str(messages[7])
    assert all(isinstance(e, InvalidInputError) for e in messages.values())


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        ("not json", InvalidRequestError, "not valid JSON"),
        (json.dumps([1]), InvalidRequestError, "JSON object"),
        (json.dumps({"items": {}}), InvalidRequestError, "must be a list"),
        (json.dumps({"items": []}), InvalidRequestError, "empty"),
        (json.dumps({"items": [{"text": "t", "label": "sci.med"}], "x": 1}), InvalidRequestError, "unknown"),
        (body([{"text": "t", "label": "sci.med"}] * (MAX_ITEMS + 1)), TooManyTextsError, "limit is 1000"),
    ],
)
def test_bodies_refused_as_a_whole(raw: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        parse_feedback(raw, max_bytes=5_000_000, max_chars=10_000)


def test_a_long_text_is_cut_as_serving_cuts_it() -> None:
    item = parse_item({"text": "word " * 50, "label": "sci.med"}, 0, max_chars=20)
    assert item.text_hash == text_hash(("word " * 50)[:20].rstrip())


# -- sums ----------------------------------------------------------------------------------------------
def test_quality_sums_give_accuracy_interval_and_calibration() -> None:
    q = QualitySums()
    for i in range(100):  # 80 % right, all at confidence 0.95: over-confident by 0.15
        q.add(ServedAnswer("1", "production", "sci.med" if i < 80 else "sci.space", 0.95, True), "sci.med")
    s = q.summary()
    assert (s["labelled"], s["accuracy"]) == (100, 0.8)
    assert s["accuracy_low"] < 0.8 < s["accuracy_high"]
    assert s["ece"] == pytest.approx(0.15)
    low, high = wilson(80, 100)
    assert (round(low, 3), round(high, 3)) == (0.711, 0.867)
    assert s["most_confused"] == [{"true": "sci.med", "predicted": "sci.space", "count": 20}]
    merged = QualitySums()
    merged.add_sums(q)
    merged.add_sums(q)
    assert merged.summary()["accuracy"] == 0.8 and merged.n == 200
    assert merged.confusion == {(13, 14): 40}
    item = {k: {"N": str(v)} for k, v in merged.to_values().items()}
    assert QualitySums.from_item(item).summary() == {**merged.summary(), "stage": None}


def test_aggregate_counts_the_answering_version_and_the_discordant_pairs() -> None:
    items = parse(
        [{"text": f"t{i}", "label": "sci.med"} for i in range(4)],
    ).items

    def served(cand: str, prod: str) -> Served:
        return Served(
            "logreg",
            "2026-12-06T23:00:00Z",
            (
                ServedAnswer("2", "canary", cand, 0.9, True, 7),
                ServedAnswer("1", "production", prod, 0.8),
            ),
        )

    pairs = [("sci.med", "sci.space"), ("sci.space", "sci.med"), ("sci.med", "sci.med"), ("x", "y")]
    sums = aggregate(Joined(i, served(c, p)) for i, (c, p) in zip(items, pairs, strict=True))
    q = sums.quality[("2026-12-06T23:00:00Z", "logreg", "2")]
    assert (q.n, q.correct, q.stage) == (4, 2, "canary")
    tally = sums.gate[("logreg", "canary", "2", 7)]
    assert (tally.labelled, tally.candidate_only_correct, tally.production_only_correct) == (4, 1, 1)


# -- the ledger and the join, through the service ------------------------------------------------------
def labelled_head(version: str, seed: int = 0, name: str = "logreg") -> FakeHead:
    head = FakeHead(name, version, seed=seed)
    head.labels = list(LABELS)
    return head


def test_ledger_pairs_candidate_and_production_answers(fake_encoder: FakeEncoder) -> None:
    prod = labelled_head("1")
    route = Route(prod, canary=Permuted(prod, "2"), canary_weight=0.3, canary_epoch=7, shadow=None)
    result = InferenceService(fake_encoder, Fixed({"logreg": route})).predict(TEXTS, ["logreg"])
    entries = served_entries(result, "w", sample=1.0)
    assert len(entries) == len(TEXTS)
    for p, h in zip(result.predictions["logreg"], result.hashes, strict=True):
        served = entries[("logreg", h)]
        assert served.answering == ServedAnswer(
            p.version, p.stage, p.label, p.top[0]["probability"], True, 7 if p.stage == "canary" else 0
        )
        if p.stage == "canary":
            production = served.of_stage("production")
            assert production is not None and production.version == "1" and not production.answered
    assert 0.05 < len(served_entries(result, "w", sample=0.1)) / len(TEXTS) < 0.2  # a hash sample


class Recording:
    """The moto client, recording every UpdateItem request. ``fail_pk``: the updates of that partition key
    fail (a non-retryable error); ``together``: an update waits until that many are in flight at once."""

    def __init__(self, ddb: Any, fail_pk: str = "", together: int = 1) -> None:
        self.ddb, self.fail_pk = ddb, fail_pk
        self.updates: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.barrier = threading.Barrier(together, timeout=30)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ddb, name)

    def update_item(self, **kwargs: Any) -> Any:
        with self.lock:
            self.updates.append(kwargs)
        self.barrier.wait()
        if kwargs["Key"]["pk"]["S"] == self.fail_pk:
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "no"}}, "UpdateItem")
        return self.ddb.update_item(**kwargs)


def ledger_items(ddb: Any) -> list[dict[str, Any]]:
    items = ddb.scan(TableName="monitor")["Items"]
    return [i for i in items if i["pk"]["S"].startswith("served#")]


def rows(served: Iterable[Served]) -> list[tuple[str, str, list[list[Any]]]]:
    """Entries as the ledger stores them (a confidence to four places)."""
    return [(s.model, s.window, [a.to_list() for a in s.answers]) for s in served]


def item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it (names and values in UTF-8; a number counted as its digits, at
    least what DynamoDB counts)."""
    return sum(len(k.encode()) + len(next(iter(v.values())).encode()) for k, v in item.items())


@pytest.fixture
def tables(ddb: Any) -> dict[str, Any]:
    create_table(ddb, "monitor", MONITOR_KEYS)
    create_table(ddb, "results", RESULTS_KEYS)
    create_table(ddb, "rollout", ROLLOUT_KEYS)
    rollout = RolloutStore("rollout", ddb)
    return {
        "ddb": ddb,
        "rollout": rollout,
        "store": FeedbackStore("monitor", "results", ddb, rollout=rollout),
    }


def test_feedback_by_text_joins_counts_once_and_feeds_the_gate(
    fake_encoder: FakeEncoder, tables: dict[str, Any]
) -> None:
    prod = labelled_head("1")
    route = Route(prod, canary=Permuted(prod, "2"), canary_weight=0.3, canary_epoch=7)
    result = InferenceService(fake_encoder, Fixed({"logreg": route})).predict(TEXTS, ["logreg"])
    capture = Capture(MonitorStore("monitor", tables["ddb"]), flush_seconds=0, ledger_sample=1.0)
    capture.observe(result)
    assert capture.maybe_flush(force=True) >= len(TEXTS)
    capture.observe(result)  # the same answers again: nothing new to write
    assert capture.ledger is not None and not capture.ledger.pending

    truth = {t: p.label for t, p in zip(TEXTS, result.predictions["logreg"], strict=True)}  # as answered
    # production is right by construction where it answered; the canary's permuted labels are wrong
    items = [{"text": t, "label": truth[t]} for t in TEXTS]
    store = tables["store"]
    outcome = submit_feedback(parse(items), store, ["logreg", "rf"], window_seconds=300)
    answer = outcome.to_dict()
    assert answer["accepted"] == len(TEXTS) and answer["duplicates"] == 0 and answer["rejected"] == []
    first = answer["joined"][0]["models"]["logreg"]
    assert set(first) == {"model_version", "stage", "predicted", "confidence", "correct", "window"}

    canary_texts = sum(p.stage == "canary" for p in result.predictions["logreg"])
    quality = store.quality()
    assert quality[("logreg", "2")].n == canary_texts == quality[("logreg", "2")].correct
    assert quality[("logreg", "1")].n == len(TEXTS) - canary_texts
    tally = tables["rollout"].get("logreg", "canary", "2", 7)
    assert tally.labelled == canary_texts
    # the canary answered with its own (permuted) labels and was "right" on them: production rarely agrees
    assert tally.candidate_only_correct > 0.8 * canary_texts and tally.production_only_correct == 0

    again = submit_feedback(parse(items[:10]), store, ["logreg"], window_seconds=300).to_dict()
    assert (again["accepted"], again["duplicates"]) == (0, 10)
    assert store.quality()[("logreg", "1")].n == len(TEXTS) - canary_texts  # nothing counted twice


def test_feedback_by_batch_request_feeds_the_gate_and_callers_never_see_the_comparison(
    fake_encoder: FakeEncoder, tables: dict[str, Any]
) -> None:
    """A queued request answered during a rollout keeps, in its stored result, the answers its canary or
    shadow was compared with, so its label joined by ``batch_id + request_id`` adds to the candidate's
    paired counters like a label joined by text; ``GET /v1/batches`` shows the answer without them."""
    prod = labelled_head("1")
    route = Route(
        prod,
        canary=Permuted(prod, "2"),
        canary_weight=0.3,
        canary_epoch=7,
        shadow=Permuted(prod, "3"),
        shadow_sample=0.5,
        shadow_epoch=4,
    )
    svc = InferenceService(fake_encoder, Fixed({"logreg": route}))
    requests = [QueuedRequest("b1", f"r{i}", t, ["logreg"]) for i, t in enumerate(TEXTS[:30])]
    chunks = [QueuedChunk("b1", c, requests[c * 15 : (c + 1) * 15]) for c in range(2)]
    results = ResultsStore("results", client=tables["ddb"])
    results.create_batch("b1", len(requests))
    records = [{"messageId": f"m{c.chunk}", "body": c.to_message()} for c in chunks]
    outcome = process_records(records, svc, results.write, Settings(models=("logreg",)))
    assert outcome.failed_message_ids == [] and outcome.results == len(requests)

    page = results.get_page("b1", limit=100)
    assert page is not None and len(page.results) == len(requests)
    for shown in page.results:  # what callers get: the answer, nothing about candidates
        assert not PRIVATE_ANSWER_KEYS & shown["models"]["logreg"].keys(), shown
    stored = tables["store"].batch_results("b1", 300)[1]
    answers = {rid: r["models"]["logreg"] for rid, r in stored.items()}
    by_stage = {
        stage: [rid for rid, a in answers.items() if a["stage"] == stage]
        for stage in ("canary", "production")
    }
    assert by_stage["canary"] and by_stage["production"]
    rows = {rid: {row[1]: row for row in a.get("compared", [])} for rid, a in answers.items()}
    for rid in by_stage["canary"]:  # production's answer beside the canary's, and the canary's epoch
        assert answers[rid]["epoch"] == 7 and rows[rid]["production"][:2] == ["1", "production"]
    for rid in by_stage["production"]:
        assert "epoch" not in answers[rid] and "production" not in rows[rid]
    shadowed = [rid for rid in answers if "shadow" in rows[rid]]  # its sample, whoever answered
    assert shadowed and all(rows[rid]["shadow"][:2] == ["3", "shadow"] for rid in shadowed)
    assert all(rows[rid]["shadow"][5] == 4 for rid in shadowed)  # the shadow's epoch

    # the true label: what production answered (so production is right, the permuted candidates wrong)
    prod_label = {
        rid: a["label"] if a["stage"] == "production" else rows[rid]["production"][2]
        for rid, a in answers.items()
    }
    items = [{"batch_id": "b1", "request_id": rid, "label": label} for rid, label in prod_label.items()]
    answer = submit_feedback(parse(items), tables["store"], ["logreg"], window_seconds=300).to_dict()
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (len(items), 0, [])
    canary = tables["rollout"].get("logreg", "canary", "2", 7)
    disagree = sum(answers[rid]["label"] != prod_label[rid] for rid in by_stage["canary"])
    assert canary.labelled == len(by_stage["canary"])
    assert (canary.candidate_only_correct, canary.production_only_correct) == (0, disagree)
    shadow = tables["rollout"].get("logreg", "shadow", "3", 4)
    assert shadow.labelled == len(shadowed) and shadow.candidate_only_correct == 0
    quality = tables["store"].quality()
    assert quality[("logreg", "2")].n == len(by_stage["canary"])
    assert quality[("logreg", "1")].n == quality[("logreg", "1")].correct == len(by_stage["production"])


def test_a_batch_result_without_a_rollout_keeps_the_plain_answer(
    fake_encoder: FakeEncoder, tables: dict[str, Any]
) -> None:
    svc = InferenceService(fake_encoder, {"logreg": labelled_head("1")})
    chunk = QueuedChunk(
        "b2", 0, [QueuedRequest("b2", f"r{i}", t, ["logreg"]) for i, t in enumerate(TEXTS[:5])]
    )
    results = ResultsStore("results", client=tables["ddb"])
    results.create_batch("b2", 5)
    process_records([{"messageId": "m", "body": chunk.to_message()}], svc, results.write, Settings())
    stored = tables["store"].batch_results("b2", 300)[1]
    assert all(not PRIVATE_ANSWER_KEYS & r["models"]["logreg"].keys() for r in stored.values())
    served = served_from_result("logreg", "w", stored["r0"])
    assert served is not None and len(served.answers) == 1 and served.answering is not None
    # a stored row this code cannot read is skipped: the answer still counts, without a comparison
    odd = {**stored["r0"], "models": {"logreg": {**stored["r0"]["models"]["logreg"], "compared": [["x"]]}}}
    assert len(served_from_result("logreg", "w", odd).answers) == 1  # type: ignore[union-attr]


def test_unknown_ids_are_rejected_and_a_call_of_only_bad_items_is_a_4xx(tables: dict[str, Any]) -> None:
    results = ResultsStore("results", client=tables["ddb"])
    answer = {
        "status": "ok",
        "models": {
            "logreg": {
                "label": "sci.med",
                "label_id": 13,
                "top": [{"label": "sci.med", "label_id": 13, "probability": 0.7}],
                "model_version": "3",
                "stage": "production",
            }
        },
    }
    results.create_batch("b1", 2)
    results.write([ResultChunk("b1", 0, (("r1", answer), ("r2", {"status": "error", "error": {}})))])
    store = tables["store"]
    ok = submit_feedback(
        parse(
            [
                {"batch_id": "b1", "request_id": "r1", "label": "sci.space"},
                {"batch_id": "b1", "request_id": "r2", "label": "sci.space"},  # failed: nothing served
                {"batch_id": "nope", "request_id": "r1", "label": "sci.space"},
                {"text": "never served", "label": "sci.space"},
            ]
        ),
        store,
        ["logreg"],
        window_seconds=300,
    ).to_dict()
    assert ok["accepted"] == 1 and [r["index"] for r in ok["rejected"]] == [1, 2, 3]
    assert ok["joined"][0]["models"]["logreg"]["correct"] is False
    assert "no answered request 'r2'" in ok["rejected"][0]["error"]["message"]
    assert store.quality()[("logreg", "3")].summary()["accuracy"] == 0.0
    with pytest.raises(NothingValidError) as bad:
        submit_feedback(
            parse([{"text": "never served", "label": "sci.space"}]), store, ["logreg"], window_seconds=300
        )
    assert "no served answer recorded" in str(bad.value)


def test_a_call_confusing_every_class_pair_is_written_in_parts(tables: dict[str, Any]) -> None:
    """1,000 labels of a poor version can confuse ~380 class pairs: one update of all its counters would
    be an expression over DynamoDB's 4 KB (and past moto's parser); the store writes them in parts."""
    from topicserve.feedback.model import FeedbackSums
    from topicserve.feedback.store import MAX_ADDS

    q = QualitySums()
    for t in LABELS:
        for p in LABELS:
            q.add(ServedAnswer("9", "canary", p, 0.55, True), t)  # every pair, right on the diagonal
    assert len(q.to_values()) > 3 * MAX_ADDS
    client = Recording(tables["ddb"])
    store = FeedbackStore("monitor", "results", client)
    store.add(FeedbackSums(quality={("w", "logreg", "9"): q}))
    calls = [u["UpdateExpression"] for u in client.updates]
    assert len(calls) == 2 * -(-len(q.to_values()) // MAX_ADDS)  # the window's and the all-windows' item
    assert max(len(c) for c in calls) < 2_000
    for window in ("w", "all"):
        back = store.quality(window)[("logreg", "9")]
        assert (back.n, back.correct, back.confusion) == (400, 20, q.confusion)
        assert back.summary()["ece"] == pytest.approx(q.summary()["ece"])


def test_ledger_write_failure_keeps_entries_for_the_next_flush(
    fake_encoder: FakeEncoder, tables: dict[str, Any]
) -> None:
    result = InferenceService(fake_encoder, {"logreg": labelled_head("1")}).predict(TEXTS[:5], ["logreg"])
    ledger = ServedLedger("missing-table", tables["ddb"], sample=1.0)
    ledger.observe(result, "w")
    with pytest.raises(Exception):  # noqa: B017  (moto's ResourceNotFoundException)
        ledger.flush()
    assert len(ledger.pending) == 5
    ledger.table = "monitor"
    assert ledger.flush() == 5 and not ledger.pending


def test_a_text_answered_by_five_models_is_one_item_written_once(
    fake_encoder: FakeEncoder, tables: dict[str, Any]
) -> None:
    """The bulk path answers every model for a text in one pass: its sampled texts cost one UpdateItem
    (one write unit: the item stays under 1 KB) each, as a text answered by one model does."""
    heads = {m: labelled_head("12", seed=i, name=m) for i, m in enumerate(MODEL_NAMES)}
    assert len(heads) == 5
    result = InferenceService(fake_encoder, heads).predict(TEXTS, list(heads))
    chosen = {h for h in result.hashes if sampled(h, 0.1)}
    assert 0 < len(chosen) < len(TEXTS) / 5
    client = Recording(tables["ddb"])
    ledger = ServedLedger("monitor", client, sample=0.1)
    ledger.observe(result, "2026-12-06T23:00:00Z")
    assert len(ledger.pending) == 5 * len(chosen)
    assert ledger.flush() == len(chosen) == len(client.updates) and not ledger.pending
    assert all(u["UpdateExpression"].count("=") == 6 for u in client.updates)  # five entries and the ttl
    items = ledger_items(tables["ddb"])
    assert {i["pk"]["S"] for i in items} == {f"served#{h}" for h in chosen}
    for item in items:
        assert item["sk"]["S"] == "answers" and "ttl" in item
        assert sorted(a for a in item if a.startswith("m_")) == sorted(f"m_{m}" for m in MODEL_NAMES)
        assert item_bytes(item) <= 1024
    found = tables["store"].served_texts(list(chosen), list(MODEL_NAMES))
    entries = served_entries(result, "2026-12-06T23:00:00Z", 0.1)
    assert {h: rows(served) for h, served in found.items()} == {
        h: rows(entries[(m, h)] for m in MODEL_NAMES) for h in chosen
    }


def test_two_writers_of_one_text_keep_each_others_answers(
    fake_encoder: FakeEncoder, tables: dict[str, Any]
) -> None:
    """Each synchronous model has a predict function of its own: two ledgers write the same texts' item,
    each its own model's entry, and neither erases the other's (a new answer replaces only its own)."""
    texts = TEXTS[:5]
    logreg = InferenceService(fake_encoder, {"logreg": labelled_head("1")}).predict(texts, ["logreg"])
    rf = InferenceService(fake_encoder, {"rf": labelled_head("4", 1, "rf")}).predict(texts, ["rf"])
    first, second = (ServedLedger("monitor", tables["ddb"], sample=1.0) for _ in range(2))
    first.observe(logreg, "w1")
    second.observe(rf, "w2")
    assert first.flush() == second.flush() == len(texts)
    newer = InferenceService(fake_encoder, {"logreg": labelled_head("2", 3)}).predict(texts, ["logreg"])
    first.observe(newer, "w3")  # logreg serves the texts again under a new version
    assert first.flush() == len(texts)
    assert len(ledger_items(tables["ddb"])) == len(texts)
    found = tables["store"].served_texts(list(logreg.hashes) * 2, ["logreg", "rf", "mlp"])
    assert set(found) == set(logreg.hashes)
    for served in found.values():  # mlp never answered: absent
        assert [(s.model, s.window, a.version) for s in served if (a := s.answering)] == [
            ("logreg", "w3", "2"),
            ("rf", "w2", "4"),
        ]


def test_an_unchanged_answer_writes_nothing_and_the_old_layout_is_not_read(
    fake_encoder: FakeEncoder, tables: dict[str, Any]
) -> None:
    result = InferenceService(fake_encoder, {"logreg": labelled_head("1")}).predict(TEXTS[:5], ["logreg"])
    client = Recording(tables["ddb"])
    ledger = ServedLedger("monitor", client, sample=1.0)
    ledger.observe(result, "w")
    assert ledger.flush() == 5 and len(client.updates) == 5
    ledger.observe(result, "w")  # answered again the same way
    assert not ledger.pending and ledger.flush() == 0 and len(client.updates) == 5

    old = text_hash("answered before the change")  # one item per (text, model): expires by its TTL
    item = {"pk": {"S": f"served#{old}"}, "sk": {"S": "logreg"}, "w": {"S": "w"}, "a": {"S": "[]"}}
    tables["ddb"].put_item(TableName="monitor", Item=item)
    assert tables["store"].served_texts([old], ["logreg"]) == {}


def test_a_failed_update_keeps_exactly_that_texts_entries_for_the_next_flush(
    fake_encoder: FakeEncoder, tables: dict[str, Any]
) -> None:
    """A flush's updates are in flight together (every one waits until all five are); the one that fails
    keeps its text's entries pending, the others are written and remembered."""
    heads = {"logreg": labelled_head("1"), "rf": labelled_head("4", 1, "rf")}
    result = InferenceService(fake_encoder, heads).predict(TEXTS[:5], list(heads))
    bad = result.hashes[2]
    client = Recording(tables["ddb"], fail_pk=f"served#{bad}", together=5)
    ledger = ServedLedger("monitor", client, sample=1.0)
    ledger.observe(result, "w")
    with pytest.raises(BackendUnavailableError, match="ValidationException"):
        ledger.flush()
    assert not client.barrier.broken and len(client.updates) == 5
    assert set(ledger.pending) == {("logreg", bad), ("rf", bad)}
    assert {i["pk"]["S"] for i in ledger_items(tables["ddb"])} == {f"served#{h}" for h in result.hashes} - {
        f"served#{bad}"
    }
    ledger.ddb = retry = Recording(tables["ddb"])
    ledger.observe(result, "w")  # the written ones are remembered: only the failed text is written again
    assert ledger.flush() == 1 == len(retry.updates) and not ledger.pending
    found = tables["store"].served_texts(result.hashes, list(heads))
    assert all([s.model for s in found[h]] == ["logreg", "rf"] for h in result.hashes)


# -- live quality ----------------------------------------------------------------------------------------
def sums(correct: int, n: int, confidence: float = 0.9) -> QualitySums:
    q = QualitySums()
    for i in range(n):
        q.add(ServedAnswer("1", "production", "sci.med" if i < correct else "x", confidence, True), "sci.med")
    return q


def test_quality_report_flags_production_only_when_the_intervals_are_apart() -> None:
    refs = references_from_metrics(
        {
            ("logreg", "1"): {"accuracy": 0.72, "n_test": 7532},
            ("logreg", "2"): {"accuracy": 0.72},
            ("rf", "1"): {},
        }
    )
    assert refs == {("logreg", "1"): (0.72, 7532), ("logreg", "2"): (0.72, 0)}
    report = quality_report(
        {("logreg", "1"): sums(560, 1000), ("logreg", "2"): sums(14, 20), ("rf", "1"): sums(5, 10)},
        refs,
        {"logreg": "1", "rf": "1"},
    )
    v1, v2 = report["logreg"]["versions"]["1"], report["logreg"]["versions"]["2"]
    assert v1["below_reference"] and report["logreg"]["production_below_reference"]  # 0.56 vs 0.72
    assert not v2["below_reference"]  # 0.70 of 20: its interval reaches 0.72
    assert "reference_accuracy" not in report["rf"]["versions"]["1"]
    assert not report["rf"]["production_below_reference"]
    lines = quality_lines(report)
    assert "BELOW REFERENCE" in lines[1] and lines[1].split()[:2] == ["logreg", "1"]
    assert quality_lines({}) == ["live quality: no label feedback in this window"]


def test_store_report_reads_the_registry_for_references(
    tables: dict[str, Any], registry: Any, tmp_path: Any
) -> None:
    from tests.unit.conftest import artifact

    registry.register("logreg", artifact(tmp_path, "a.onnx", b"a"), format="onnx", metrics={"accuracy": 0.7})
    registry.promote("logreg", 1)
    store = tables["store"]
    served = Served("logreg", "w1", (ServedAnswer("1", "production", "sci.med", 0.8, True),))
    items = parse([{"text": f"t{i}", "label": "sci.med" if i % 2 else "sci.space"} for i in range(40)]).items
    store.add(aggregate(Joined(i, served) for i in items))
    report = store.report(registry, ["logreg"], "w1")
    live = report["logreg"]["versions"]["1"]
    assert (live["labelled"], live["accuracy"], live["reference_accuracy"]) == (40, 0.5, 0.7)
    assert live["below_reference"] and report["logreg"]["production"] == "1"
    assert store.report(registry, ["logreg"])["logreg"]["versions"]["1"]["labelled"] == 40  # all windows


# -- retraining from feedback ----------------------------------------------------------------------------
def test_archived_labels_come_back_as_training_rows(s3: Any, tmp_path: Any) -> None:
    from topicserve.feedback.store import LabelArchive
    from training.feedback import archived_labels, feedback_rows

    s3.create_bucket(Bucket="artifacts")
    archive = LabelArchive("artifacts", s3)
    first = parse(
        [{"text": "a text about  rockets", "label": "sci.space"}, {"text": "held out", "label": "sci.med"}]
    )
    assert archive.put(first.items) is not None
    later = parse(
        [
            {"text": "a text about rockets", "label": "sci.electronics"},
            {"batch_id": "b", "request_id": "r", "label": "sci.med"},
        ]
    )
    archive.put(later.items)  # relabelled: the latest label wins; a batch item has no text to archive
    assert archive.put(parse([{"batch_id": "b", "request_id": "r", "label": "sci.med"}]).items) is None
    stack = tmp_path / "stack.json"
    stack.write_text(json.dumps({"bucket": "artifacts"}))
    labelled = archived_labels(stack, s3)
    assert labelled == {"a text about rockets": "sci.electronics", "held out": "sci.med"}
    texts, y = feedback_rows(labelled, list(LABELS), exclude=["held  out"])  # a test text stays held out
    assert texts == ["a text about rockets"] and y.tolist() == [LABELS.index("sci.electronics")]


# -- through the queue -----------------------------------------------------------------------------------
def test_feedback_messages_through_the_queue(tables: dict[str, Any], s3: Any) -> None:
    from topicserve.feedback.store import LabelArchive, feedback_body, process_feedback_records

    assert feedback_body(json.dumps({"batch_id": "b", "request_id": "r", "text": "feedback"})) is None
    assert feedback_body("not json, says feedback") is None
    assert feedback_body(json.dumps({"feedback": [1]})) is None
    data = feedback_body(json.dumps({"feedback": {"items": [{"text": "a text", "label": "sci.med"}]}}))
    assert data == {"items": [{"text": "a text", "label": "sci.med"}]}

    ttl = 2_000_000_000
    served = Served("logreg", "w", (ServedAnswer("1", "production", "sci.med", 0.9, True),))
    tables["ddb"].put_item(TableName="monitor", Item=ledger_item(text_hash("a text"), [served], ttl))
    s3.create_bucket(Bucket="artifacts")
    records = [
        ("m1", data),
        ("m2", data),  # the same feedback again: a duplicate
        ("m3", {"items": [{"text": "never served", "label": "sci.med"}]}),  # dropped: no retry can fix it
        ("m4", {"items": "nope"}),
    ]
    done = process_feedback_records(
        records,
        tables["store"],
        ["logreg"],
        window_seconds=300,
        max_chars=10_000,
        archive=LabelArchive("artifacts", s3),
    )
    assert (done.accepted, done.duplicates, done.refused_messages, done.retry) == (1, 1, 2, [])
    assert tables["store"].quality()[("logreg", "1")].correct == 1
    broken = FeedbackStore("missing-table", "results", tables["ddb"])
    retried = process_feedback_records(records[:1], broken, ["logreg"], window_seconds=300, max_chars=10_000)
    assert retried.retry == ["m1"]  # a backend failure: received again
