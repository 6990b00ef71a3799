"""Hypothesis profiles for the whole suite.

``ci`` (loaded when the ``CI`` environment variable is set): derandomised, so a CI run draws the same
examples every time and a red build reproduces on a laptop with ``CI=1``; no example database, which a
fresh CI checkout would not keep anyway. ``fresh``: random examples from the seed that ``make test-slow``
draws, prints and passes with ``--hypothesis-seed`` (a failure there reruns with
``make test-slow HYPOTHESIS_SEED=<seed>``). Without either, Hypothesis' own default profile.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("fresh", derandomize=False, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
