"""Changing a deployed function's configuration: the one place that edits Lambda environment variables.

Used by the deploy (renew environments after a promotion), the tests (fault switches) and the benchmarks
(variants). Any configuration change publishes a new ``$LATEST`` and retires the old environments, so the
next invocation is a cold start under the new settings; callers wait for the update to finish before
they invoke, or they would race the old configuration.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the boto3 stubs: development environment only
    from mypy_boto3_lambda import LambdaClient

GENERATION = "ENVIRONMENT_GENERATION"


def environment(lam: LambdaClient, name: str) -> dict[str, str]:
    config = lam.get_function_configuration(FunctionName=name)
    return dict(config.get("Environment", {}).get("Variables", {}))


def update_environment(
    lam: LambdaClient, name: str, changes: Mapping[str, str | None], *, wait: bool = True
) -> None:
    """Set (or, with None, remove) environment variables of a function; wait for the update by default."""
    variables = environment(lam, name)
    for key, value in changes.items():
        if value is None:
            variables.pop(key, None)
        else:
            variables[key] = value
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": variables})
    if wait:
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)


def update_environments(lam: LambdaClient, names: Iterable[str], changes: Mapping[str, str | None]) -> None:
    """The same variables changed on several functions: every update started first, then all waited
    for, so N functions cost one update's wait rather than N."""
    names = list(names)
    for name in names:
        update_environment(lam, name, changes, wait=False)
    for name in names:
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)


def renew_environments(lam: LambdaClient, names: Iterable[str]) -> None:
    """Make functions start fresh execution environments (and so re-run their init) without a deploy:
    bump a harmless variable on each."""
    update_environments(lam, names, {GENERATION: str(time.time_ns())})
