"""Head-level rollout: shadow, sticky canary, gates and rollback, driven by the registry's stages.

* :mod:`.routing` (pure): which version answers a text and which candidates are compared on it;
* :mod:`.tally` (pure): what a candidate did (agreement, confidence, errors, latency), summed;
* :mod:`.gates` (pure): thresholds -> promote, roll back or wait;
* :mod:`.router` (adapter): the routing a serving environment follows, refreshed from the registry with a
  TTL, heads loaded lazily and sha256-verified;
* :mod:`.records` (adapter): the per-version rollout records in DynamoDB, and the gate run over them.
"""
