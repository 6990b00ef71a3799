"""The key/value interface every cache backend implements, and an in-process LRU.

Values are opaque bytes: the typed caches (``typed.py``) own the encoding, so a backend never needs to
know what an embedding is. A warm Lambda environment keeps the LRU between invocations, which turns
repeated texts into zero network round trips; DynamoDB behind it shares results across environments.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Protocol, runtime_checkable

from topicserve.errors import BackendUnavailableError

logger = logging.getLogger(__name__)


class CacheUnavailableError(BackendUnavailableError):
    """The backend could not be reached or refused the call; callers degrade to computing without it."""


@runtime_checkable
class CacheStore(Protocol):
    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """Return the values of the keys that are present; absent keys are simply missing from the result."""
        ...

    def put_many(self, items: Mapping[str, bytes]) -> None: ...

    @property
    def errors(self) -> int:
        """Back-end failures this store absorbed so far (it served without the back end instead)."""
        ...


class LRUStore:
    """Bounded, thread-safe, least-recently-used store held in process memory."""

    def __init__(self, max_items: int = 50_000) -> None:
        if max_items < 0:
            raise ValueError("max_items must be >= 0")
        self.max_items = max_items
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    @property
    def errors(self) -> int:
        return 0  # memory does not fail

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        with self._lock:
            for key in keys:
                value = self._data.get(key)
                if value is not None:
                    self._data.move_to_end(key)
                    found[key] = value
        return found

    def put_many(self, items: Mapping[str, bytes]) -> None:
        if self.max_items == 0:
            return
        with self._lock:
            for key, value in items.items():
                self._data[key] = value
                self._data.move_to_end(key)
            while len(self._data) > self.max_items:
                self._data.popitem(last=False)


class TieredStore:
    """A fast front store (the LRU) over a shared back store (DynamoDB).

    Reads try the front first and only ask the back for what is missing, then fill the front with what the
    back had. Writes go to the front, and to the back for the keys the caller admits (all by default).

    A back store that is down or throttled must not take predictions down with it: its
    :class:`CacheUnavailableError` is logged as a warning and counted in ``errors`` (callers turn that
    into a metric), and the call carries on as if the back had no entry.
    """

    def __init__(self, front: CacheStore, back: CacheStore | None) -> None:
        self.front = front
        self.back = back
        self._errors = 0

    @property
    def errors(self) -> int:
        return self._errors

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        return self.get_many_counted(keys)[0]

    def get_many_counted(
        self, keys: Iterable[str], ask_back: Callable[[str], bool] | None = None
    ) -> tuple[dict[str, bytes], int, set[str]]:
        """The values found, how many keys the back store was asked for (each is a billed read), and
        which keys the back store had. ``ask_back``: which of the keys the front lacks are worth a read."""
        wanted = list(dict.fromkeys(keys))
        found = self.front.get_many(wanted)
        missing = [k for k in wanted if k not in found and (ask_back is None or ask_back(k))]
        if not missing or self.back is None:
            return found, 0, set()
        try:
            from_back = self.back.get_many(missing)
        except CacheUnavailableError as exc:
            self._degraded("read", exc)
            return found, len(missing), set()
        if from_back:
            self.front.put_many(from_back)
            found.update(from_back)
        return found, len(missing), set(from_back)

    def put_many(self, items: Mapping[str, bytes]) -> None:
        self.put_admitted(items, None)

    def put_admitted(self, items: Mapping[str, bytes], shared: Collection[str] | None) -> int:
        """Write every item to the front and those named in ``shared`` (None: all) to the back; returns
        how many the back was given."""
        self.front.put_many(items)
        if self.back is None or not items:
            return 0
        back = items if shared is None else {k: v for k, v in items.items() if k in shared}
        if not back:
            return 0
        try:
            self.back.put_many(back)
        except CacheUnavailableError as exc:
            self._degraded("write", exc)
        return len(back)

    def _degraded(self, operation: str, exc: CacheUnavailableError) -> None:
        self._errors += 1
        logger.warning("cache back store %s failed, serving without it: %s", operation, exc)
