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
    assert results.get_batch("nope") is None
    results.create_batch("b", 12)
    assert results.get_batch("b").status == "pending"  # type: ignore[union-attr]
    rows = [("b", str(i), {"status": "ok", "n": i}) for i in range(12)]
    results.put_results(rows[:5])
    results.put_results(rows[3:] + rows[:2])  # duplicate deliveries
    view = results.get_batch("b")
    assert view is not None and view.status == "complete"
    assert [r["request_id"] for r in view.results] == [str(i) for i in range(12)]
    assert view.to_dict()["completed"] == 12


def test_batch_without_meta_has_unknown_size(results: ResultsStore) -> None:
    results.put_results([("direct", "0", {"status": "ok"})])
    assert results.get_batch("direct").status == "unknown_size"  # type: ignore[union-attr]


def test_send_all_uses_batches_of_ten(aws: None) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    assert send_all(sqs, url, [f"m{i}" for i in range(23)]) == 3
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "23"
