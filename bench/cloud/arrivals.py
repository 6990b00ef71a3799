"""When requests arrive: Poisson and bursty arrival processes, and the open-loop dispatcher that replays
them (a late call is sent at once, never skipped: client delays count against us)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def poisson(rate: float, duration_s: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    n_max = int(rate * duration_s * 3 + 20)
    times = np.cumsum(rng.exponential(1.0 / rate, size=n_max))
    return [float(t) for t in times if t < duration_s]


def bursty_trace(duration_s: float, keepalive_s: float, seed: int) -> list[float]:
    """Arrival times in the manner of the Azure Functions trace (Shahrad et al., ATC'20): invocations come
    in bursts, idle gaps are heavy-tailed (lognormal, CV > 1) and often exceed the keep-alive."""
    rng = np.random.default_rng(seed)
    times, t = [], 1.0
    while t < duration_s:
        for _ in range(1 + int(rng.geometric(0.45)) - 1):
            times.append(t)
            t += float(rng.exponential(0.4))
        t += float(rng.lognormal(mean=math.log(0.9 * keepalive_s), sigma=1.0))
    return [x for x in times if x < duration_s]


def dispatch(
    arrivals: list[float],
    t0: float,
    call: Callable[[int], None],
    workers: int,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """``call(i)`` at ``t0 + arrivals[i]`` (times on ``clock``) on a pool of ``workers`` threads; returns
    when every call has finished."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, a in enumerate(arrivals):
            delay = t0 + a - clock()
            if delay > 0:
                time.sleep(delay)
            pool.submit(call, i)
