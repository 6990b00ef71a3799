"""The Hypothesis profiles of tests/conftest.py do what CI and ``make test-slow`` rely on."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st


def draws(profile: str) -> list[int]:
    drawn: list[int] = []

    @settings(settings.get_profile(profile), max_examples=20)
    @given(st.integers())
    def record(x: int) -> None:
        drawn.append(x)

    record()
    return drawn


def test_ci_profile_draws_the_same_examples_every_run() -> None:
    assert settings.get_profile("ci").derandomize
    assert draws("ci") == draws("ci")


def test_fresh_profile_is_random_so_its_seed_decides() -> None:
    assert not settings.get_profile("fresh").derandomize
