"""The report's Markdown vocabulary: numbers as text ("n/a" for what was not measured), tables."""

from __future__ import annotations

from typing import Any


def fmt(value: Any, digits: int = 1, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return f"{value:,.{digits}f}{suffix}"


def pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return [row(*header), row(*["---"] * len(header)), *[row(*r) for r in rows], ""]


def percentile_ms(summary: dict[str, Any], key: str) -> str:
    return fmt(summary[key], 0)
