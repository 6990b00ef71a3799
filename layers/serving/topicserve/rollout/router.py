"""The routing one execution environment follows: the registry's stages, without a redeploy.

At cold start the router reads every served model's routing in one call and loads the production and
canary heads concurrently (the shadow keeps loading in the background: nothing waits for it). Afterwards
:meth:`Router.current` re-reads the routing when it is older than the TTL (one small BatchGetItem), loads
any new version in a background thread (sha256-verified by the registry download), and keeps serving
the previous routing until the new head is ready, so a rollout step never stalls or fails a request. A
routing read or a load that fails leaves the routing as it was and is retried at the next refresh; a
candidate that cannot be loaded is reported (``on_load_error``) so the gate can roll it back.

Lambda freezes an environment between invocations, background loads included: a load started by one
request finishes during the next ones, which keep being answered meanwhile.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from topicserve.errors import ChecksumMismatchError
from topicserve.protocols import HeadLike
from topicserve.registry.model import Routing, Stage
from topicserve.rollout.routing import Route
from topicserve.rollout.seed import SeedHead

logger = logging.getLogger(__name__)

LoadHead = Callable[[str, int], HeadLike]  # (model, version) -> a loaded, verified head
LoadError = Callable[[str, str, int, int], None]  # (model, stage, version, epoch)
LoadSeed = Callable[[SeedHead], HeadLike]  # a deploy's production head from the layer, sha256-verified


class RoutingReader(Protocol):
    def routings(self, names: Sequence[str]) -> dict[str, Routing]: ...


class Router:
    def __init__(
        self,
        models: Sequence[str],
        registry: RoutingReader,
        load: LoadHead,
        *,
        ttl_seconds: float = 30.0,
        load_wait_seconds: float = 1.0,
        shadow_sample: float = 1.0,
        on_load_error: LoadError | None = None,
        load_seed: LoadSeed | None = None,
        executor: cf.Executor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.models = list(models)
        self.registry = registry
        self.load = load
        self.ttl = ttl_seconds
        self.load_wait = load_wait_seconds
        self.shadow_sample = shadow_sample
        self.on_load_error = on_load_error
        self.load_seed: LoadSeed = load_seed or (lambda seed: load(seed.model, seed.version))
        self.executor = executor or cf.ThreadPoolExecutor(max_workers=3, thread_name_prefix="loader")
        self.clock = clock
        self.desired: dict[str, Routing] = {}
        self.loaded: dict[tuple[str, int], HeadLike] = {}
        self.pending: dict[tuple[str, int], cf.Future[tuple[int, HeadLike]]] = {}
        self.refreshes = 0
        self._routes: dict[str, Route] = {}
        self._next_refresh = 0.0
        self._reading: cf.Future[dict[str, Routing] | None] | None = None  # a seeded start's routing read
        self._wrap: Callable[[HeadLike], HeadLike] | None = None  # see wrap_heads

    # -- cold start ---------------------------------------------------------------------------------
    def start(self, seeds: Mapping[str, SeedHead] | None = None) -> None:
        """Load what answers requests and raise if a model has no production head that passes its sha256
        check (the environment cannot serve it).

        With a seed for every model (the deploy's production heads, :mod:`topicserve.rollout.seed`), only the
        seeds are loaded: init makes no round trip. The registry is read right after init
        (:meth:`read_in_background`) or else by the first request, which applies what the read found.
        Otherwise the routing is read now and production and canary heads are loaded concurrently (the
        shadow keeps loading in the background)."""
        if seeds and all(m in seeds for m in self.models) and self._load_seeds(seeds):
            self._next_refresh = float("-inf")  # the first request reads the routing, if nothing did before
            self._rebuild()
            return
        self._refresh(self.clock(), fail=True)
        needed = [
            f
            for (model, version), f in self.pending.items()
            if version in (self.desired[model].production, self.desired[model].canary)
        ]
        cf.wait(needed)
        self._harvest(raise_production=True)
        missing = [m for m in self.models if m not in self._routes]
        if missing:
            raise RuntimeError(f"no production head loaded for {missing}")

    def _load_seeds(self, seeds: Mapping[str, SeedHead]) -> bool:
        """Load every model's seed concurrently; False (and the registry path) if one is refused."""
        loading = {m: self.executor.submit(self.load_seed, seeds[m]) for m in self.models}
        refused = False
        for model, future in loading.items():
            seed = seeds[model]
            try:
                head = future.result()
            except Exception as exc:  # a tampered or unreadable seed: the registry's copy is fetched instead
                logger.error(
                    "refused the deploy's seed head; loading production from the registry",
                    extra={"model": model, "version": seed.version, "error": repr(exc)},
                )
                refused = True
                continue
            self.desired[model] = Routing(model=model, production=seed.version)
            self.loaded[(model, seed.version)] = self._wrapped(head)
        return not refused

    def read_in_background(self) -> None:
        """Start the routing read a seeded start leaves for after init: it (and the AWS client it builds)
        runs while the runtime fetches the first event, and the first request waits for it at most
        ``load_wait_seconds``, so a rollout made since the deploy still decides what that request gets."""
        if self._reading is None and self._next_refresh == float("-inf"):
            self._reading = self.executor.submit(self._read_after_init)
            self._next_refresh = self.clock() + self.ttl

    def _read_after_init(self) -> dict[str, Routing] | None:
        """The routing read of a seeded start; None, said at once in the log, when the registry cannot be
        reached (whether or not a request is there to apply the answer)."""
        try:
            return self.registry.routings(self.models)
        except Exception as exc:
            logger.warning(
                "registry unreachable: serving the deploy's production heads (seed)",
                extra={"error": repr(exc), "serving": {m: r.production for m, r in self.desired.items()}},
            )
            return None

    def expire(self) -> None:
        """Make the next request re-read the routing, whatever its age (after a SnapStart restore the
        routing in memory is the snapshot's, possibly days old, and the monotonic clock is not comparable)."""
        self._next_refresh = float("-inf")

    def wrap_heads(self, wrap: Callable[[HeadLike], HeadLike]) -> None:
        """Serve every head through ``wrap``: those loaded now and each one loaded later, a new routing's
        included (the test stacks' chaos switches, :func:`topicserve.faults.with_test_faults`; at init)."""
        self._wrap = wrap
        self.loaded = {key: wrap(head) for key, head in self.loaded.items()}

        def served(model: str, head: HeadLike) -> HeadLike:  # a route's heads are loaded ones (_rebuild)
            key = (model, int(head.version))
            return self.loaded[key] if key in self.loaded else wrap(head)

        self._routes = {
            m: replace(
                r,
                production=served(m, r.production),
                canary=served(m, r.canary) if r.canary else None,
                shadow=served(m, r.shadow) if r.shadow else None,
            )
            for m, r in self._routes.items()
        }

    def _wrapped(self, head: HeadLike) -> HeadLike:
        return self._wrap(head) if self._wrap is not None else head

    # -- per request ---------------------------------------------------------------------------------
    def current(self) -> Mapping[str, Route]:
        """The routing to serve this request with. The request that finds a routing change waits up to
        ``load_wait_seconds`` for the new heads (milliseconds for most: heads are small), so an environment
        switches between two requests rather than part-way through a rollout step; a slower load finishes
        in the background while the previous routing keeps serving."""
        now = self.clock()
        if self._reading is not None:
            self._apply_background_read()
        elif now >= self._next_refresh:
            self._refresh(now)
        else:
            return self._harvested()
        if self.pending and self.load_wait > 0:
            cf.wait(list(self.pending.values()), timeout=self.load_wait)
        return self._harvested()

    def _harvested(self) -> Mapping[str, Route]:
        if self.pending:
            self._harvest()
        return self._routes

    def _apply_background_read(self) -> None:
        """The first request after a seeded start: apply the routing read that init left running, waiting
        for it at most ``load_wait_seconds``. A failed read leaves the deploy's heads serving, and the next
        TTL retries."""
        assert self._reading is not None
        if not self._reading.done() and self.load_wait > 0:
            cf.wait([self._reading], timeout=self.load_wait)
        if not self._reading.done():
            return
        reading, self._reading = self._reading, None
        self.refreshes += 1
        found = reading.result()
        if found is not None:  # None: unreachable, logged by the read; the next TTL retries
            self._apply(found, fail=False)

    def status(self) -> dict[str, Any]:
        """For logs and the warm-up answer: what is desired, what serves, what is still loading."""
        return {
            m: {
                "desired": self.desired[m].to_dict() if m in self.desired else None,
                "serving": {
                    "production": r.production.version,
                    "canary": r.canary.version if r.canary else None,
                    "canary_weight": r.canary_weight,
                    "shadow": r.shadow.version if r.shadow else None,
                },
                "loading": sorted(v for (model, v) in self.pending if model == m),
            }
            for m, r in self._routes.items()
        }

    # -- steps ---------------------------------------------------------------------------------------
    def _refresh(self, now: float, *, fail: bool = False) -> None:
        self._next_refresh = now + self.ttl
        self.refreshes += 1
        try:
            found = self.registry.routings(self.models)
        except Exception as exc:
            if fail:
                raise
            logger.warning("routing refresh failed; serving the current routing", extra={"error": repr(exc)})
            return
        self._apply(found, fail=fail)

    def _apply(self, found: Mapping[str, Routing], *, fail: bool) -> None:
        """Make a routing read the desired routing and start loading the versions it names."""
        missing = [m for m in self.models if m not in found or found[m].production is None]
        if missing and fail:
            raise RuntimeError(f"no production version in the registry for {missing}")
        for model, routing in found.items():
            if routing.production is None:
                continue
            if self.desired.get(model) != routing:
                logger.info("routing changed", extra={"model": model, "routing": routing.to_dict()})
            self.desired[model] = routing
            for version in sorted(routing.versions()):
                key = (model, version)
                if key not in self.loaded and key not in self.pending:
                    task = self._production if version == routing.production else self._candidate
                    self.pending[key] = self.executor.submit(task, model, version, routing)
        self._rebuild()

    def _production(self, model: str, version: int, routing: Routing) -> tuple[int, HeadLike]:
        """The production head; a refused artifact (sha256 mismatch) falls back to the versions that were
        in production before it, newest first, at cold start (a warm environment keeps what it serves)."""
        fallbacks = (
            [v for v in reversed(routing.history) if v != version] if not self._routes.get(model) else []
        )
        refused: ChecksumMismatchError | None = None
        for candidate in [version, *fallbacks]:
            try:
                return candidate, self.load(model, candidate)
            except ChecksumMismatchError as exc:
                logger.error(
                    "refused a head artifact that fails its sha256 check",
                    extra={"model": model, "version": candidate, "error": str(exc)},
                )
                refused = refused or exc
        assert refused is not None
        raise refused

    def _candidate(self, model: str, version: int, routing: Routing) -> tuple[int, HeadLike]:
        return version, self.load(model, version)

    def _harvest(self, *, raise_production: bool = False) -> None:
        changed = False
        for key, future in list(self.pending.items()):
            if not future.done():
                continue
            del self.pending[key]
            model, version = key
            try:
                loaded_version, head = future.result()
            except Exception as exc:
                routing = self.desired.get(model)
                stage = _stage_of(routing, version)
                logger.error(
                    "could not load a head; serving the current routing",
                    extra={"model": model, "version": version, "stage": stage, "error": repr(exc)},
                )
                if stage == Stage.PRODUCTION and raise_production:
                    raise
                if routing is not None and self.on_load_error and stage in (Stage.CANARY, Stage.SHADOW):
                    epoch = routing.canary_rev if stage == Stage.CANARY else routing.shadow_rev
                    self.on_load_error(model, stage, version, epoch)
                continue
            self.loaded[(model, loaded_version)] = self._wrapped(head)
            if loaded_version != version:  # a production fallback: remember what serves instead
                self.desired[model] = _with_production(self.desired[model], loaded_version)
            changed = True
        if changed:
            self._rebuild()

    def _rebuild(self) -> None:
        routes: dict[str, Route] = {}
        for model, routing in self.desired.items():
            served = self._routes.get(model)
            production = self.loaded.get((model, routing.production or 0)) or (
                served.production if served else None
            )
            if production is None:
                continue
            canary = self.loaded.get((model, routing.canary)) if routing.canary is not None else None
            shadow = self.loaded.get((model, routing.shadow)) if routing.shadow is not None else None
            routes[model] = Route(
                production=production,
                canary=canary,
                canary_weight=routing.canary_weight,
                shadow=shadow,
                shadow_sample=self.shadow_sample,
                canary_epoch=routing.canary_rev,
                shadow_epoch=routing.shadow_rev,
            )
        self._routes = routes
        keep = {
            (m, int(h.version)) for m, r in routes.items() for h in (r.production, r.canary, r.shadow) if h
        }
        keep |= {(m, v) for m, routing in self.desired.items() for v in routing.versions()}
        for key in [k for k in self.loaded if k not in keep]:
            del self.loaded[key]  # a version no stage uses any more: free its session


def _stage_of(routing: Routing | None, version: int) -> str:
    if routing is None:
        return "unknown"
    return routing.stage_of().get(version, Stage.NONE).value


def _with_production(routing: Routing, version: int) -> Routing:
    return replace(routing, production=version)
