"""How long the two editions take to build, as `make book` builds them (scripts/book.py).

    .venv/bin/python benchmarks/book_rebuild.py [--cold-zh]

Prints, for each edition, the seconds of a cached rebuild: nothing changed since the last build, so
nothing is executed and Sphinx reads no page again (target: both together <= 30 s). With --cold-zh
it also removes the Chinese edition's build (its doctrees and pages, not the shared execution cache)
and times building it from nothing: the cold build's extra cost of the second language.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK = [sys.executable, str(ROOT / "scripts" / "book.py")]


def timed(args: list[str]) -> tuple[float, dict[str, float]]:
    """Wall seconds of one run, and each edition's own build time as it prints it."""
    start = time.perf_counter()
    proc = subprocess.run(BOOK + args, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args) or 'both'}: build failed\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if "Executing notebook" in proc.stdout + proc.stderr:
        print(f"  (note: {' '.join(args) or 'both'} executed a notebook: the cache was not current)")
    return seconds, {lang: float(s) for lang, s in re.findall(r"^\[(en|zh)\] built in ([\d.]+) s", proc.stdout, re.M)}


def main() -> int:
    print("bringing both editions up to date first ...")
    timed([])
    both, each = timed([])
    print(f"cached rebuild (make book): {both:.1f} s for both (English {each.get('en', 0):.1f} s, "
          f"Chinese {each.get('zh', 0):.1f} s, plus start-up); target <= 30 s: {'met' if both <= 30 else 'NOT met'}")
    if "--cold-zh" in sys.argv[1:]:
        shutil.rmtree(ROOT / "_build" / "zh", ignore_errors=True)
        shutil.rmtree(ROOT / "_build" / "html" / "zh", ignore_errors=True)
        cold, _ = timed(["zh"])
        print(f"cold Chinese edition (execution cache warm, nothing executed): {cold:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
