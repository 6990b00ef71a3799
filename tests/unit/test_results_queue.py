from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.helpers import RESULTS_KEYS, create_table
from tests.unit.conftest import FakeEncoder, FakeHead
from topicserve.batcher import process_records
from topicserve.dynamo import RetryPolicy
from topicserve.errors import BackendUnavailableError
from topicserve.queue import send_all
from topicserve.requests import QueuedChunk, QueuedRequest
from topicserve.results import ResultChunk, ResultsStore
from topicserve.service import InferenceService
from topicserve.settings import Settings


@pytest.fixture
def results(ddb: Any) -> ResultsStore:
    create_table(ddb, "results", RESULTS_KEYS)
    return ResultsStore("results", client=ddb)


def test_batch_progress_and_one_result_per_request(results: ResultsStore) -> None:
    assert results.get_page("nope", limit=10) is None
    results.create_batch("b", 12)
    empty = results.get_page("b", limit=10)
    assert empty is not None and empty.status == "pending" and empty.results == []
    chunks = [
        ResultChunk("b", n, tuple((str(i), {"status": "ok", "n": i}) for i in range(4 * n, 4 * n + 4)))
        for n in range(3)
    ]
    results.write(chunks[:2])
    results.write(chunks[1:] + chunks[:1])  # duplicate deliveries
    page = results.get_page("b", limit=100)
    assert page is not None and page.status == "complete" and page.last_request_id is None
    assert sorted(r["request_id"] for r in page.results) == sorted(str(i) for i in range(12))
    assert page.to_dict()["completed"] == 12 and page.to_dict()["next"] is None


@pytest.mark.parametrize("limit", [1, 5, 12, 13])
def test_pages_cover_every_result_once(results: ResultsStore, limit: int) -> None:
    ids = [str(i) for i in range(12)] + ["-a", "z.z"]
    results.put_results([("b", r, {"status": "ok"}) for r in ids])  # one per message, straight to SQS
    seen: list[str] = []
    after = None
    for _ in range(100):
        page = results.get_page("b", limit=limit, after=after)
        assert page is not None and len(page.results) <= limit and page.completed == len(ids)
        assert page.status == "unknown_size"
        seen += [r["request_id"] for r in page.results]
        after = page.last_request_id
        if after is None:
            break
    assert seen == sorted(ids)  # every result once, in request-id (string) order, the meta item never


def test_batch_without_meta_has_unknown_size(results: ResultsStore) -> None:
    results.put_results([("direct", "0", {"status": "ok"})])
    assert results.get_page("direct", limit=10).status == "unknown_size"  # type: ignore[union-attr]


def test_send_all_uses_batches_of_ten(aws: None) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    assert send_all(sqs, url, [f"m{i}" for i in range(23)]) == 3
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "23"


def answer(i: int) -> dict[str, Any]:
    """A result shaped like the batcher's (one model), for sizes that mean something."""
    top = [{"label": f"comp.sys.label{j}", "label_id": j, "probability": 0.123456} for j in range(3)]
    model = {
        "label": "comp.sys.label0",
        "label_id": 0,
        "top": top,
        "model_version": "3",
        "stage": "production",
    }
    return {
        "status": "ok",
        "models": {"logreg": {**model, "cached": {"prediction": False, "embedding": False}}},
    }


def chunks_of(batch: str, ids: list[str], size: int) -> list[ResultChunk]:
    return [
        ResultChunk(batch, n, tuple((r, answer(i)) for i, r in enumerate(ids[k : k + size], start=k)))
        for n, k in enumerate(range(0, len(ids), size))
    ]


def read_all(results: ResultsStore, batch: str, limit: int) -> list[str]:
    seen: list[str] = []
    after = None
    for _ in range(1000):
        page = results.get_page(batch, limit=limit, after=after)
        assert page is not None and len(page.results) <= limit
        seen += [r["request_id"] for r in page.results]
        after = page.last_request_id
        if after is None:
            return seen
    raise AssertionError("pagination never ended")


def test_redelivered_chunks_are_stored_and_counted_once(results: ResultsStore, ddb: Any) -> None:
    ids = [f"r{i}" for i in range(23)]
    rejected = ResultChunk("b", 3, (("~23", {"status": "error"}), ("~24", {"status": "error"})))
    results.create_batch("b", 25, rejected)
    c0, c1, c2 = chunks_of("b", ids, 10)
    results.write([c0])
    results.write([c0])  # SQS delivered it twice
    page = results.get_page("b", limit=100)
    assert page is not None and page.completed == 12 and page.status == "pending"
    results.write([c2, c1, c0])  # a batcher that got all three, one of them again
    results.write([c1])
    page = results.get_page("b", limit=100)
    assert page is not None and page.status == "complete" and page.completed == 25
    assert [r["request_id"] for r in page.results] == [*ids, "~23", "~24"]  # chunk order, then in order
    items = ddb.query(
        TableName="results",
        KeyConditionExpression="batch_id = :b",
        ExpressionAttributeValues={":b": {"S": "b"}},
    )["Items"]
    assert len(items) == 5  # #meta + 4 chunks: no item per request


def test_a_batcher_killed_between_the_chunk_and_its_count_is_counted_on_redelivery(
    results: ResultsStore, ddb: Any
) -> None:
    results.create_batch("k", 10)
    (chunk,) = chunks_of("k", [str(i) for i in range(10)], 10)
    ddb.put_item(TableName="results", Item=results._chunk_item(chunk, results._ttl()))  # died here
    page = results.get_page("k", limit=5)
    assert page is not None and page.completed == 0  # not counted yet, but never lost:
    results.write([chunk])  # its message was not deleted, so SQS delivers it again
    page = results.get_page("k", limit=100)
    assert page is not None and page.completed == 10 and len(page.results) == 10


@pytest.mark.parametrize("limit", [1, 3, 10, 11, 26, 1000])
def test_pages_cover_every_chunked_result_once_in_order(results: ResultsStore, limit: int) -> None:
    ids = [f"r{i:02d}" for i in range(25)]
    results.create_batch("p", 25)
    results.write(chunks_of("p", ids, 7))
    assert read_all(results, "p", limit) == ids


def test_a_chunk_of_ten_results_is_about_one_write_unit(results: ResultsStore) -> None:
    from bench.cost import ddb_item_bytes

    (chunk,) = chunks_of("s", [f"{i:04d}" for i in range(10)], 10)
    item = results._chunk_item(chunk, results._ttl())
    assert ddb_item_bytes(item) < 1300, ddb_item_bytes(item)  # ~270 bytes of JSON per result, compressed


class Down:
    """The results table's client while DynamoDB is unreachable: every write is throttled (a transient
    error, so retried), reads still go through to see what was (not) stored."""

    def __init__(self, ddb: Any) -> None:
        self.ddb = ddb
        self.attempts = 0

    def batch_write_item(self, **kwargs: Any) -> Any:
        self.attempts += 1
        error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
        raise ClientError(error, "BatchWriteItem")

    def update_item(self, **kwargs: Any) -> Any:
        raise AssertionError("a chunk was counted although its item was never written")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ddb, name)


def test_a_results_write_with_the_backend_down_sends_every_message_back_and_counts_nothing(
    results: ResultsStore, ddb: Any
) -> None:
    """With the table unreachable the batcher's write retries, then raises BackendUnavailableError; the
    batcher reports every answered message failed (SQS delivers them again), and no chunk is counted on
    ``#meta``, so the redelivery after the outage completes the batch exactly once."""
    results.create_batch("d", 10)
    (chunk,) = chunks_of("d", [str(i) for i in range(10)], 10)
    client = Down(ddb)
    sleeps: list[float] = []
    down = ResultsStore("results", client=client, retry=RetryPolicy(max_attempts=3, sleep=sleeps.append))
    with pytest.raises(BackendUnavailableError, match="DynamoDB results"):
        down.write([chunk])
    assert client.attempts == 3 and len(sleeps) == 2  # retried with backoff, then given up

    svc = InferenceService(FakeEncoder(), {"logreg": FakeHead("logreg")})
    requests = [QueuedRequest("d", str(i), f"text {i}", ["logreg"]) for i in range(10)]
    records = [{"messageId": "m0", "body": QueuedChunk("d", 0, requests).to_message()}]
    outcome = process_records(records, svc, down.write, Settings())
    assert outcome.failed_message_ids == ["m0"] and outcome.results == 0
    page = results.get_page("d", limit=100)
    assert page is not None and page.completed == 0 and page.results == [] and page.status == "pending"

    outcome = process_records(records, svc, results.write, Settings())  # the backend is back
    page = results.get_page("d", limit=100)
    assert outcome.failed_message_ids == [] and page is not None
    assert page.status == "complete" and page.completed == 10
