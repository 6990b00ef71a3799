from typing import Any

import boto3
import pytest

from tests.helpers import RESULTS_KEYS, create_table
from topicserve.queue import send_all
from topicserve.results import ResultsStore


@pytest.fixture
def results(ddb: Any) -> ResultsStore:
    create_table(ddb, "results", RESULTS_KEYS)
    return ResultsStore("results", client=ddb)


def test_batch_progress_and_one_result_per_request(results: ResultsStore) -> None:
    assert results.get_page("nope", limit=10) is None
    results.create_batch("b", 12)
    empty = results.get_page("b", limit=10)
    assert empty is not None and empty.status == "pending" and empty.results == []
    rows = [("b", str(i), {"status": "ok", "n": i}) for i in range(12)]
    results.put_results(rows[:5])
    results.put_results(rows[3:] + rows[:2])  # duplicate deliveries
    page = results.get_page("b", limit=100)
    assert page is not None and page.status == "complete" and page.last_request_id is None
    assert sorted(r["request_id"] for r in page.results) == sorted(str(i) for i in range(12))
    assert page.to_dict()["completed"] == 12 and page.to_dict()["next"] is None


@pytest.mark.parametrize("limit", [1, 5, 12, 13])
def test_pages_cover_every_result_once(results: ResultsStore, limit: int) -> None:
    ids = [str(i) for i in range(12)] + ["~3", "-a", "z.z"]
    results.create_batch("b", len(ids))
    results.put_results([("b", r, {"status": "ok"}) for r in ids])
    seen: list[str] = []
    after = None
    for _ in range(100):
        page = results.get_page("b", limit=limit, after=after)
        assert page is not None and len(page.results) <= limit and page.completed == len(ids)
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
