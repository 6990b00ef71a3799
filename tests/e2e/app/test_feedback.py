"""Label feedback end to end: 20NG test texts served through the API, their true labels sent back (10 %
never, the rest in two late calls), live accuracy per version in ``topicserve monitor``'s answer equal to
the accuracy of the same answers counted here, and bad feedback answered with a 4xx and a message.

Small on purpose (300 texts, a few seconds of serving): the stack keeps every served text's answers in
the ledger (FeedbackLedgerSample = 1.0, tests/e2e/app/conftest.py) and writes them at every invocation.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.e2e.app.conftest import labelled_texts
from topicserve.feedback.model import wilson
from topicserve_ops.client import Client, drift_table

pytestmark = pytest.mark.e2e
MODEL = "logreg"


@pytest.fixture(scope="module")
def client(app_stack: dict[str, Any]) -> Client:
    return Client(app_stack, timeout=120)


def test_labels_fed_back_late_give_live_accuracy_per_version(client: Client) -> None:
    labels = dict(list(labelled_texts(1300).items())[1000:])  # not test_rollout.py's first 1,000 texts
    texts = list(labels)
    served: dict[str, dict[str, Any]] = {}
    for start in range(0, len(texts), 64):
        chunk = texts[start : start + 64]
        status, body = client.predict(MODEL, chunk)
        assert status == 200, body
        served.update(zip(chunk, body["predictions"], strict=True))
    versions = {p["model_version"] for p in served.values()}

    rng = random.Random(26)
    sent = [t for t in texts if rng.random() >= 0.1]  # 10 % of the labels never come back
    halves = (sent[: len(sent) // 2], sent[len(sent) // 2 :])
    windows: set[str] = set()
    for half in halves:  # late, and in two calls (hours late would count the same: the join keeps the window)
        status, answer = client.call(
            "POST", "/v1/feedback", {"items": [{"text": t, "label": labels[t]} for t in half]}
        )
        assert status == 200, answer
        assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (len(half), 0, []), answer
        for joined in answer["joined"]:
            live = joined["models"][MODEL]
            windows.add(live["window"])
            assert live["model_version"] in versions and live["stage"] == "production"
    status, again = client.call(
        "POST", "/v1/feedback", {"items": [{"text": t, "label": labels[t]} for t in halves[0]]}
    )
    assert status == 200 and (again["accepted"], again["duplicates"]) == (0, len(halves[0])), again

    # what the monitor reports per version, summed over the serving windows (a few at most)
    labelled = correct = 0
    for window in sorted(windows):
        answer = client.monitor(window)
        print(drift_table(answer))
        quality = answer["summary"]["quality"][MODEL]
        for version, live in quality["versions"].items():
            assert version in versions and live["accuracy_low"] <= live["accuracy"] <= live["accuracy_high"]
            labelled += live["labelled"]
            correct += live["correct"]
        assert f"{MODEL:<10}" in drift_table(answer).split("ECE")[-1]  # the live-quality table
    expected = sum(served[t]["label"] == labels[t] for t in sent)
    assert (labelled, correct) == (len(sent), expected)
    # the offline accuracy of these answers on all 300 texts lies in the live interval of the 90 % labelled
    offline = sum(served[t]["label"] == labels[t] for t in texts) / len(texts)
    low, high = wilson(correct, labelled)
    assert low <= offline <= high, (low, offline, high)

    status, models = client.call("GET", "/v1/models")
    assert status == 200
    overall = models["models"][MODEL]["quality"]["versions"]
    assert sum(v["labelled"] for k, v in overall.items() if k in versions) >= len(sent)


@pytest.mark.parametrize(
    ("items", "match"),
    [
        (
            [{"text": "a text this stack never served, about nothing", "label": "sci.space"}],
            "no served answer",
        ),
        ([{"batch_id": "no-such-batch", "request_id": "r1", "label": "sci.space"}], "no answered request"),
        ([{"text": "any text", "label": "sci.spaceflight"}], "not one of the 20 classes"),
        ([{"text": 42, "label": "sci.space"}], "must be a string"),
        ([{"text": "any text", "label": "sci.space"}] * 1001, "limit is 1000"),
    ],
)
def test_bad_feedback_gets_a_4xx_with_a_message(client: Client, items: list[Any], match: str) -> None:
    status, answer = client.call("POST", "/v1/feedback", {"items": items})
    assert 400 <= status < 500, answer
    assert match in answer["error"]["message"], answer
