"""Drift monitoring end to end: traffic through a predict function, captured per window by the function
itself, judged by the deployed monitor against the reference ``make models`` registered.

Each scenario sends its texts inside one fresh window (MonitorWindowSeconds = 30 on the test stack), then
invokes the monitor on that window: in-distribution 20NG test texts (three windows, every false alarm
counted), a prior shift (texts of two classes only), a covariate shift (the same kind of texts with their
words shuffled: no longer English, the same vocabulary).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

import matplotlib.image
import pytest

from tests.e2e.app.conftest import MONITOR_WINDOW_SECONDS
from tests.e2e.conftest import LocalCloud
from topicserve.monitoring.capture import window_start
from topicserve.text import normalise
from topicserve_ops.client import Client, drift_table
from training import data as data_mod
from training.common import Settings

pytestmark = pytest.mark.e2e
MODEL = "logreg"
PER_WINDOW = 256


@pytest.fixture(scope="module")
def client(app_stack: dict[str, Any]) -> Client:
    return Client(app_stack, timeout=120)


@pytest.fixture(scope="module")
def corpus() -> dict[str, Any]:
    ds = data_mod.load(Settings.from_env().data_home, quick=False)
    rng = random.Random(13)
    order = list(range(len(ds.test.texts)))
    rng.shuffle(order)
    texts = [ds.test.texts[i] for i in order if len(normalise(ds.test.texts[i]).split()) >= 3]
    by_class = {
        label: [
            t
            for t, y in zip(ds.test.texts, ds.test.y, strict=True)
            if ds.labels[y] == label and len(t.split()) >= 3
        ]
        for label in ("rec.sport.hockey", "sci.space")
    }
    return {"texts": texts, "two_classes": by_class["rec.sport.hockey"][:128] + by_class["sci.space"][:128]}


def in_one_window(client: Client, texts_for: Callable[[int], list[str]], attempts: int = 3) -> dict[str, Any]:
    """Send ``texts_for(attempt)`` inside one fresh window, then run the monitor on that window. If the
    traffic spills into the next window (a slow machine), try again in a later window with fresh texts
    (the same texts would be prediction-cache hits, which carry no embedding to sample)."""
    for attempt in range(attempts):
        texts = texts_for(attempt)
        time.sleep(MONITOR_WINDOW_SECONDS - time.time() % MONITOR_WINDOW_SECONDS + 0.5)
        window = window_start(time.time(), MONITOR_WINDOW_SECONDS)
        for start in range(0, len(texts), 64):
            status, body = client.predict(MODEL, texts[start : start + 64])
            assert status == 200, body
        if window_start(time.time(), MONITOR_WINDOW_SECONDS) != window:
            print(f"traffic spilled out of window {window}; again in a fresh one")
            continue
        answer = client.monitor(window)
        print(drift_table(answer))
        assert answer["summary"]["models"][MODEL]["n"] == len(texts)
        return answer
    pytest.fail(f"could not send {len(texts)} texts inside one {MONITOR_WINDOW_SECONDS} s window")


def shuffled_words(texts: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for text in texts:
        words = text.split()
        rng.shuffle(words)
        out.append(" ".join(words))
    return out


def test_in_distribution_traffic_raises_no_false_alarm(client: Client, corpus: dict[str, Any]) -> None:
    starts = iter(range(0, 12 * PER_WINDOW, PER_WINDOW))  # fresh texts for every window and every retry

    def fresh(_: int) -> list[str]:
        # upper-cased: the encoder is uncased, so it reads exactly these test texts, but their hashes differ
        # from the texts test_bulk already served, whose cached predictions carry no embedding to sample
        start = next(starts)
        return [t.upper() for t in corpus["texts"][start : start + PER_WINDOW]]

    answers = [in_one_window(client, fresh) for _ in range(3)]
    false_alarms = [a["window"] for a in answers if a["drift"]]
    aucs = [a["summary"]["embeddings"]["auc"] for a in answers]
    psis = [a["summary"]["models"][MODEL]["psi"] for a in answers]
    print(
        f"in-distribution: {len(false_alarms)} false alarms in {len(answers)} windows; AUC {aucs}; PSI {psis}"
    )
    assert not false_alarms, [drift_table(a) for a in answers if a["drift"]]
    assert all(a["summary"]["embeddings"]["n"] >= 100 for a in answers)


def test_a_prior_shift_is_flagged_by_psi_within_one_window(client: Client, corpus: dict[str, Any]) -> None:
    answer = in_one_window(
        client, lambda attempt: corpus["two_classes"][attempt:] + corpus["two_classes"][:attempt]
    )
    assert answer["drift"]
    assert "prediction_psi" in answer["summary"]["models"][MODEL]["flags"], drift_table(answer)


def test_a_covariate_shift_is_flagged_by_the_embedding_test(
    client: Client, corpus: dict[str, Any], app_stack: dict[str, Any], tmp_path: Any
) -> None:
    answer = in_one_window(
        client, lambda attempt: shuffled_words(corpus["texts"][-PER_WINDOW:], seed=attempt)
    )
    assert answer["drift"]
    assert "embedding_auc" in answer["summary"]["embeddings"]["flags"], drift_table(answer)

    # the report: JSON and a PNG a person can open
    png = client.download(answer["report"]["png"], tmp_path / "drift.png")
    image = matplotlib.image.imread(png)
    assert image.shape[0] > 300 and image.shape[1] > 600
    report = json.loads(client.download(answer["report"]["json"], tmp_path / "drift.json").read_text())
    assert report["window"] == answer["window"] and report["embeddings"]["flags"]


def test_alarms_topic_and_dashboard_are_deployed(app_stack: dict[str, Any], localcloud: LocalCloud) -> None:
    cloudwatch = localcloud.client("cloudwatch")
    alarms = cloudwatch.describe_alarms()["MetricAlarms"]
    ours = [a for a in alarms if app_stack["alarm_topic"] in a.get("AlarmActions", [])]
    metrics = {a.get("MetricName") or "metric-math" for a in ours}
    assert {"DriftDetected", "Duration", "ApproximateNumberOfMessagesVisible", "metric-math"} <= metrics, (
        metrics
    )
    assert localcloud.client("sns").get_topic_attributes(TopicArn=app_stack["alarm_topic"])["Attributes"]
    body = json.loads(cloudwatch.get_dashboard(DashboardName=app_stack["dashboard"])["DashboardBody"])
    titles = " ".join(w["properties"].get("title", "") for w in body["widgets"])
    for what in ("Latency", "Throughput", "Cache hit ratio", "batch size", "Cold starts", "Drift"):
        assert what in titles, titles
