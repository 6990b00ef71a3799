"""bench.newcomer's phase split: where a demo from nothing spent its time, from timestamped lines."""

from bench.newcomer import phases


def test_each_phase_runs_from_its_first_line_to_the_next_phase() -> None:
    lines = [
        (0.0, "==> creating .venv with python3.11"),
        (70.0, "[localcloud] $ python -m venv .localcloud/venv"),
        (75.0, "[localcloud] $ pip install localstack"),
        (160.0, "12:00:00 INFO training: [encoder-export] running ..."),
        (300.0, "python3 -m infra.localstack.localcloud up"),
        (310.0, "==> images: base: debootstrap trixie"),
        (380.0, "==> deploying stack 'topicserve'"),
        (470.0, ".venv/bin/python demo/run.py"),
    ]
    assert phases(lines, end=560.0) == {
        "venv": 70.0,
        "local cloud install": 90.0,
        "models": 140.0,
        "local cloud start": 10.0,
        "images": 70.0,
        "deploy": 90.0,
        "demo requests": 90.0,
    }


def test_a_phase_that_did_not_run_is_left_out() -> None:
    lines = [(0.0, "==> creating .venv"), (5.0, "==> deploying stack 'x'")]
    assert phases(lines, end=10.0) == {"venv": 5.0, "deploy": 5.0}
