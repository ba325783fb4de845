"""Code cells read like a lecture's: short and focused (QuantEcon's median is about five lines).

A cell's length is its number of non-blank source lines, not counting its YAML header (alt text,
tags). The bounds are what the chapters reach today; lower them as cells are split further, never
raise them to let a long cell in.
"""
import re
import statistics

import pytest

from conftest import ROOT

MEDIAN_AT_MOST = 6
LONGEST_AT_MOST = 20

CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)


def cell_lengths(text: str) -> list[int]:
    """Non-blank source lines of each code cell of a MyST notebook, its YAML header excluded."""
    lengths = []
    for body in CELL.findall(text):
        lines = body.split("\n")
        if lines and lines[0].strip() == "---":
            close = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == "---")
            lines = lines[close + 1:]
        lengths.append(sum(1 for line in lines if line.strip() and not re.match(r"^:\w[\w-]*:", line)))
    return lengths


def chapter_cells() -> dict[str, list[int]]:
    return {p.stem: cell_lengths(p.read_text(encoding="utf-8"))
            for p in sorted((ROOT / "book").glob("*.md")) if "{code-cell}" in p.read_text(encoding="utf-8")}


def test_cell_lengths_counts_source_lines_only():
    text = "\n".join([
        "```{code-cell} python", "---", "mystnb:", "  image:", "    alt: a figure", "---",
        "x = 1", "", "y = 2", "```", "prose", "```{code-cell} python", ":tags: [hide-input]", "z = 3", "```",
    ])
    assert cell_lengths(text) == [2, 1]


def test_cells_are_short():
    lengths = chapter_cells()
    every = [n for ns in lengths.values() for n in ns]
    longest = {name: max(ns) for name, ns in lengths.items()}
    print(f"{len(every)} cells: median {statistics.median(every)}, longest {max(every)}; per chapter "
          + ", ".join(f"{k} {statistics.median(v)}/{max(v)}" for k, v in lengths.items()))
    assert statistics.median(every) <= MEDIAN_AT_MOST, f"median cell length {statistics.median(every)}"
    too_long = {k: [n for n in ns if n > LONGEST_AT_MOST] for k, ns in lengths.items()}
    assert not any(too_long.values()), f"cells over {LONGEST_AT_MOST} lines: {too_long} (longest per chapter {longest})"
