"""The one table formatter: plain text for terminals, or Markdown for the README and docs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def format_cell(value: object) -> str:
    """Integers as they are, other numbers to 3 decimals, anything else as text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:d}" if isinstance(value, int) else f"{value:.3f}"


def markdown_row(cells: Sequence[object]) -> str:
    """One Markdown table row (for tables printed a row at a time)."""
    return "| " + " | ".join(map(str, cells)) + " |"


def render_table(headers: Sequence[str], lines: Sequence[Sequence[object]], markdown: bool = False) -> str:
    """A table of ``lines`` under ``headers``: the first column left-aligned, the others right-aligned."""
    lines = [[str(c) for c in line] for line in lines]
    if markdown:
        return "\n".join([markdown_row(headers), "|" + "---|" * len(headers)] + [markdown_row(line) for line in lines])
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *lines, strict=True)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths])] + [fmt(line) for line in lines])


def format_table(rows: Mapping[str, Mapping[str, object]], columns: Sequence[str], markdown: bool = False,
                 first: str = "") -> str:
    """One row per entry of ``rows`` (name -> metrics), one column per metric in ``columns``
    (a missing metric shows as nan); ``first`` heads the name column."""
    return render_table([first, *columns], [[name, *(format_cell(m.get(c, float("nan"))) for c in columns)]
                                            for name, m in rows.items()], markdown)
