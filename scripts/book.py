"""Build the book in both languages from one source and one execution.

    python scripts/book.py                 both editions: _build/html (English), _build/html/zh (中文)
    python scripts/book.py en | zh         one edition
    python scripts/book.py messages        refresh the catalogs in locales/ from the chapter sources
    python scripts/book.py untranslated    list the messages the Chinese edition lacks; exit 1 if any

The Chinese edition is Sphinx's own i18n (gettext catalogs, as `sphinx-intl` keeps them): the
same chapter sources, parsed and executed once (both editions read one jupyter-cache), with the
prose of every message replaced by its translation in `locales/zh_CN/LC_MESSAGES/book/<page>.po`.
Roles and glued values inside a translated message are MyST and are parsed again, so a number on a
Chinese page is the number the execution produced, never one typed into a translation.
Each edition keeps its own doctrees; the Chinese one is built in _build/zh and copied into
_build/html/zh, so one folder serves both and a language switch on each page links the other.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# As `make book` runs it: the chapters' tiny models get one CPU thread per process (see Makefile).
os.environ.setdefault("OMP_NUM_THREADS", "1")
CACHE = ROOT / "_build" / ".jupyter_cache"      # one execution serves both editions
# BOOK_BUILD=/tmp/x builds elsewhere (a translator's own copy); the execution cache stays shared.
BUILD = Path(os.environ.get("BOOK_BUILD") or ROOT / "_build")
LOCALES = ROOT / "locales"
ZH = "zh_CN"
# Where each edition lives in the site, and its own configuration on top of _config.yml.
EDITIONS = {
    "en": {"out": BUILD / "html", "doctrees": BUILD / ".doctrees", "overrides": {}},
    "zh": {"out": BUILD / "zh" / "html", "doctrees": BUILD / "zh" / ".doctrees", "overrides": {
        "language": ZH,
        "locale_dirs": [str(LOCALES)],
        "gettext_compact": False,
        "html_title": "神经网络训练不起来怎么办",
        "html_search_language": "zh",
        "nb_code_prompt_show": "显示代码单元",
        "nb_code_prompt_hide": "隐藏代码单元",
        # Search segments Chinese with jieba; the glossary's terms are its extra dictionary, so that
        # 学习率 or 动量系数 is one searchable word.
        "html_search_options": {"dict": str(BUILD / "zh" / "jieba_terms.txt")},
    }},
}
SITE_PATH = {"en": "", "zh": "zh/"}          # the course_site extension's language switch reads this
GETTEXT = BUILD / "gettext"


def common_overrides() -> dict:
    return {
        "external_toc_path": str(ROOT / "_toc.yml"),
        "latex_individualpages": False,
        "nitpicky": True,
        "nb_execution_cache_path": str(CACHE),
        "course_editions": {lang: path for lang, path in SITE_PATH.items()},
    }


def sphinx(builder: str, out: Path, doctrees: Path, overrides: dict, strict: bool = True) -> int:
    from jupyter_book.sphinx import build_sphinx
    result = build_sphinx(ROOT, out, noconfig=True, path_config=ROOT / "_config.yml",
                          confoverrides={**common_overrides(), **overrides}, doctreedir=doctrees,
                          builder=builder, warningiserror=strict, keep_going=True)
    if isinstance(result, Exception):
        return 1
    return result


def jieba_terms() -> Path:
    """The glossary's Chinese terms, one per line, as a jieba user dictionary."""
    from i18n import terms
    path = EDITIONS["zh"]["overrides"]["html_search_options"]["dict"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{zh} 100 n\n" for zh in sorted({t.zh for t in terms()}))
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def build(lang: str) -> int:
    edition = EDITIONS[lang]
    if lang == "zh":
        jieba_terms()
    status = sphinx("html", edition["out"], edition["doctrees"], edition["overrides"])
    if status == 0 and lang == "zh":
        sync(edition["out"], EDITIONS["en"]["out"] / SITE_PATH["zh"].rstrip("/"))
    return status


def sync(src: Path, dst: Path) -> None:
    """Copy src over dst, rewriting only changed files and removing what src no longer has."""
    keep = set()
    for path in src.rglob("*"):
        rel = path.relative_to(src)
        keep.add(rel)
        target = dst / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists() or target.stat().st_size != path.stat().st_size \
                or target.read_bytes() != path.read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    for path in sorted(dst.rglob("*"), reverse=True):
        if path.relative_to(dst) not in keep:
            path.unlink() if path.is_file() or path.is_symlink() else path.rmdir()


def extract() -> int:
    """Every message of the book, as .pot files in _build/gettext (Sphinx's gettext builder)."""
    # myst-nb keeps, per builder, one of each output's formats; for the gettext builder it knows
    # none, so a figure would vanish before its alt text is extracted. Keep the images.
    keep = [("gettext", mime, rank) for rank, mime in enumerate(
        ("image/svg+xml", "image/png", "image/jpeg", "text/markdown", "text/latex", "text/plain"))]
    return sphinx("gettext", GETTEXT, BUILD / ".doctrees-gettext",
                  {"gettext_compact": False, "nb_mime_priority_overrides": keep})


def messages() -> int:
    """Extract every message, then merge them into the .po files (sphinx-intl)."""
    status = extract()
    if status:
        return status
    return subprocess.call([str(Path(sys.executable).with_name("sphinx-intl")), "update",
                            "-p", str(GETTEXT), "-d", str(LOCALES), "-l", ZH, "-w", "100"])


def main(argv: list[str]) -> int:
    import logging
    logging.getLogger("fontTools").setLevel(logging.WARNING)   # the site's font subsetting chatters
    what = argv[0] if argv else "all"
    if what == "messages":
        return messages()
    if what == "untranslated":
        from i18n import untranslated
        if extract():
            return 2
        missing = untranslated(GETTEXT)
        for where, msgid in missing:
            print(f"{where}: {msgid[:100]}")
        print(f"{len(missing)} untranslated message(s)")
        return 1 if missing else 0
    if what == "all":
        # Each edition in a process of its own: Jupyter Book keeps one copy of its default
        # configuration per process, and the themes add to its lists, so a second build in the
        # same process would see another configuration (and rewrite every page of the next one).
        for lang in ("en", "zh"):
            status = subprocess.call([sys.executable, __file__, lang])
            if status:
                return status
        print("\nThe site is in _build/html (English) and _build/html/zh (中文).")
        return 0
    start = time.perf_counter()
    status = build(what)
    print(f"[{what}] built in {time.perf_counter() - start:.1f} s" if status == 0
          else f"[{what}] build failed (exit {status})", flush=True)
    return status


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main(sys.argv[1:]))
