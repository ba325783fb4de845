"""Print how long each chapter of the book takes to execute, top to bottom, in a fresh kernel.

    .venv/bin/python benchmarks/chapter_times.py [CHAPTER ...]   # default: every chapter in _toc.yml

Each chapter is converted from its MyST source with jupytext and executed with nbclient in the
repository's book/ directory, as the book build does; the device is optlab's choice
(OPTLAB_DEVICE=cpu|cuda forces one). The target is <= 90 s per chapter on a 2-core CPU.
"""
import argparse
import os
import platform
import sys
import time
from pathlib import Path

import jupytext
import nbclient
import yaml

ROOT = Path(__file__).resolve().parents[1]


def code_chapters() -> list[Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [ROOT / f"{entry['file']}.md" for entry in toc["chapters"]]
    return [f for f in files if "{code-cell}" in f.read_text()]


def run(path: Path) -> float:
    nb = jupytext.read(path)
    start = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapter slugs, e.g. momentum (default: all)")
    args = parser.parse_args()
    chapters = [ROOT / "book" / f"{c}.md" for c in args.chapters] or code_chapters()
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, OPTLAB_DEVICE={os.environ.get('OPTLAB_DEVICE', '(auto)')}")
    total = 0.0
    for path in chapters:
        seconds = run(path)
        total += seconds
        print(f"{path.stem:<20} {seconds:7.1f} s", flush=True)
    print(f"{'total':<20} {total:7.1f} s")


if __name__ == "__main__":
    sys.exit(main())
