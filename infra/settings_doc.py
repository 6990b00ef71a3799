"""docs/SETTINGS.md, rendered from the settings' declarations (topicserve.settings.setting).

    .venv/bin/python -m infra.settings_doc            # rewrite docs/SETTINGS.md
    .venv/bin/python -m infra.settings_doc --check    # exit 1 when it differs from the declarations

tests/unit/test_settings.py fails when the committed file differs, so a setting's documentation is its
declaration. Here and not in the operator tools (``topicserve_ops``) because the list includes the bulk
worker's settings, and the operator tools and the worker do not import each other.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from topicserve.monitoring.monitor import DriftThresholds
from topicserve.rollout.gates import Thresholds
from topicserve.settings import Settings, declared
from topicserve_worker.worker import WorkerSettings

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "SETTINGS.md"

#: every settings class: (heading, class, who reads it)
SECTIONS: tuple[tuple[str, type[Any], str], ...] = (
    (
        "Every function",
        Settings,
        "What every function's runtime is built from (`topicserve.bootstrap`); each reads those it uses.",
    ),
    (
        "The rollout gate",
        Thresholds,
        "The gate function acts on them; `GET /v1/models` (the API function) previews its decisions.",
    ),
    ("The drift monitor", DriftThresholds, "The monitor function's."),
    ("The bulk worker", WorkerSettings, "The GPU worker's (`topicserve-worker`), beside `Settings`."),
)

HEADER = """\
# Settings

Every setting of the functions and the bulk worker, read from its environment variable at a cold start
(the worker: at its start). Generated from the declarations by `python -m infra.settings_doc`: edit the
declaration (`setting(default, env=..., why=...)` in the class named in each section), not this file;
`tests/unit/test_settings.py` fails when they differ, and when `template.yaml` sets a variable that is not
declared here.

How a value is read, whatever the setting (`topicserve.settings.load`): unset or blank is the default; an
integer, number, boolean (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`) or choice that does not parse
is an error at init that names the variable; text is stripped; a list is comma-separated (blank items
dropped; none left: the default); an optional integer reads `0` as "none". `template.yaml` sets most of
them from its parameters (`Globals` and each function's `Environment`); the rest keep their defaults there
and are set by tests and benchmarks.
"""


def render() -> str:
    parts = [HEADER]
    for heading, cls, readers in SECTIONS:
        parts.append(f"\n## {heading}: `{cls.__module__}.{cls.__qualname__}`\n\n{readers}\n\n")
        parts.append("| variable | attribute | type | default | why |\n|---|---|---|---|---|\n")
        for attribute, env, kind, default, described, why in declared(cls):
            shown = default if described else f"`{default}`" if default else "(blank)"
            parts.append(f"| `{env}` | `{attribute}` | {kind} | {shown} | {_cell(why)} |\n")
    return "".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/SETTINGS.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        stale = not DOC.is_file() or DOC.read_text() != text
        if stale:
            print(f"{DOC.relative_to(REPO)} is stale: python -m infra.settings_doc", file=sys.stderr)
        return int(stale)
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
