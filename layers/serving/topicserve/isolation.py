"""Failure isolation for vectorised passes: find the items that break a batch and serve the rest.

A vectorised pass (tokenise, encode and classify a hundred texts at once) fails as a whole when one item
breaks it. Bisection pins the culprits within the same invocation: a failing group is split in halves
and each half is tried again; a single item that still fails is a culprit. With k bad items among n that
costs about 2k log2(n) extra passes, and every good item is still served by one successful pass.

Three outcomes per item, which the callers map to their transport:

* served: in a group whose pass succeeded;
* failed: fails on its own, deterministically (an error result, never a retry);
* retry: a transient failure (a backend down: bisecting says nothing about the items), a pass the
  deadline left no time for, or a failure that is not the item's own (nothing at all could be served
  and a known-good probe fails too: the model is broken, not the input).

Pure: no AWS, no models; the pass, the deadline and the probe are injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from topicserve.errors import InvalidInputError, is_transient

R = TypeVar("R")


@dataclass
class Isolation(Generic[R]):
    served: list[tuple[list[int], R]] = field(default_factory=list)  # item indices and their pass's result
    failed: dict[int, Exception] = field(default_factory=dict)
    retry: dict[int, Exception | None] = field(default_factory=dict)  # None: no time was left to try
    passes: int = 0

    @property
    def isolated(self) -> int:
        """Items answered with their own error instead of failing the batch."""
        return len(self.failed)


def isolate(
    n: int,
    run: Callable[[list[int]], R],
    *,
    remaining_ms: Callable[[], float] | None = None,
    reserve_ms: float = 0.0,
    probe: Callable[[], object] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Isolation[R]:
    """Run ``run`` over items ``0..n-1``, bisecting failing groups down to single items.

    Before each pass, the time it will take is estimated from the slowest pass so far (per item); when
    ``remaining_ms()`` minus ``reserve_ms`` (what the caller needs afterwards) does not cover it, the
    group goes to ``retry`` untried. ``probe`` runs a pass that must succeed when the pass itself is
    healthy; it is only called when items failed with errors that are not input errors and no group at
    all could be served: then a failing probe sends those items to ``retry``.
    """
    outcome: Isolation[R] = Isolation()
    stack = [list(range(n))] if n else []
    ms_per_item = 0.0
    while stack:
        group = stack.pop()
        if remaining_ms is not None and remaining_ms() - reserve_ms < ms_per_item * len(group):
            outcome.retry.update(dict.fromkeys(group))
            continue
        outcome.passes += 1
        started = clock()
        try:
            outcome.served.append((group, run(group)))
        except Exception as exc:
            if is_transient(exc):
                outcome.retry.update(dict.fromkeys(group, exc))
            elif len(group) == 1:
                outcome.failed[group[0]] = exc
            else:
                half = len(group) // 2
                stack += [group[half:], group[:half]]  # first half first
        finally:
            ms_per_item = max(ms_per_item, (clock() - started) * 1000 / len(group))
    suspect = {i: e for i, e in outcome.failed.items() if not isinstance(e, InvalidInputError)}
    if suspect and not outcome.served and probe is not None and not _probe_passes(probe):
        for i, error in suspect.items():
            del outcome.failed[i]
            outcome.retry[i] = error
    return outcome


def _probe_passes(probe: Callable[[], object]) -> bool:
    try:
        probe()
    except Exception:
        return False
    return True
