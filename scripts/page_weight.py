"""Report the weight of each page of the built site: the HTML plus every local file it loads.

    python scripts/page_weight.py [_build/html] [--limit-mb 5]

Assets are the page's stylesheets, scripts, images and media (all figures, whether or not they
are on the first screen), the files those stylesheets load (fonts, images), and, on pages that
use MathJax, the components its loader fetches (from the page's MathJax configuration) and the
web fonts its TeX needs (MathJax loads each font on demand; the script counts the main, italic
and size fonts of every page with math, plus bold, AMS, calligraphic ... where the TeX uses them).
The browser test (tests/test_site_browser.py) checks that this stays within a few percent of
what Chromium fetches. Exits 1 when a page is over the limit (1.5 MB).
"""
from __future__ import annotations

import argparse
import html
import json
import re
import sys
from pathlib import Path

from site_html import css_refs, is_local, pages, parse, resolve

MATHJAX = "_static/mathjax"
MATHJAX_FONTS = f"{MATHJAX}/output/chtml/fonts/woff-v2"
# Components a MathJax component needs besides itself (as MathJax's loader resolves them).
MATHJAX_NEEDS = {"input/tex": ["core"], "output/chtml": ["core", "output/chtml/fonts/tex"],
                 "a11y/assistive-mml": ["core"]}
# Fonts CommonHTML loads for any TeX, and those loaded only when the TeX asks for them.
MATHJAX_BASE_FONTS = ["MathJax_Zero", "MathJax_Main-Regular", "MathJax_Math-Italic",
                      "MathJax_Size1-Regular", "MathJax_Size2-Regular", "MathJax_Size3-Regular",
                      "MathJax_Size4-Regular"]
MATHJAX_FONT_TRIGGERS = {
    r"\\(mathbf|bf|boldsymbol|bm)\b": ["MathJax_Main-Bold", "MathJax_Math-BoldItalic"],
    r"\\(mathbb|Bbb|lesssim|gtrsim|checkmark|square|blacksquare|varnothing|nleq|ngeq)\b": ["MathJax_AMS-Regular"],
    r"\\mathcal\b": ["MathJax_Calligraphic-Regular"],
    r"\\(mathtt|texttt)\b": ["MathJax_Typewriter-Regular"],
    r"\\(mathit|textit|emph)\b": ["MathJax_Main-Italic"],
    r"\\mathfrak\b": ["MathJax_Fraktur-Regular"],
    r"\\(mathsf|textsf)\b": ["MathJax_SansSerif-Regular"],
    r"\\mathscr\b": ["MathJax_Script-Regular"],
    r"\\(vec|overrightarrow)\b": ["MathJax_Vector-Regular"],
}
IMAGE_SUFFIXES = {".png", ".svg", ".jpg", ".jpeg", ".gif", ".webp"}
# An @font-face lists one font in several formats; a browser loads the first it supports.
FONT_PREFERENCE = [".woff2", ".woff", ".ttf", ".otf", ".eot"]


def page_assets(site: Path, page: Path) -> set[Path]:
    """The local files loaded with `page` (not following links to other pages)."""
    todo = [resolve(page, ref)[0] for ref in parse(page).assets if is_local(ref)]
    found: set[Path] = set()
    while todo:
        asset = todo.pop()
        if asset in found or not asset.is_file():
            continue
        found.add(asset)
        if asset.suffix == ".css":
            todo += [resolve(asset, ref)[0] for ref in css_refs(asset) if is_local(ref)]
        if asset.name in ("startup.js", "tex-chtml.js") and "mathjax" in asset.parts:
            todo += mathjax_files(site, page)
    return {a for a in found if not _better_font_format(a, found)}


def mathjax_files(site: Path, page: Path) -> list[Path]:
    """The components MathJax's loader fetches for `page` and the fonts its TeX needs."""
    text = page.read_text(encoding="utf-8", errors="replace")
    config = re.search(r"window\.MathJax\s*=\s*(\{.*?\})</script>", text, re.S)
    load = json.loads(config.group(1)).get("loader", {}).get("load", []) if config else []
    components = {c for name in load for c in [name, *MATHJAX_NEEDS.get(name, [])]}
    files = [site / MATHJAX / f"{c}.js" for c in sorted(components)]
    tex = html.unescape(" ".join(re.findall(r'class="math[^"]*"[^>]*>(.*?)</(?:span|div)>', text, re.S)))
    fonts = list(MATHJAX_BASE_FONTS) if tex.strip() else []
    for pattern, names in MATHJAX_FONT_TRIGGERS.items():
        if re.search(pattern, tex):
            fonts += names
    return files + [site / MATHJAX_FONTS / f"{name}.woff" for name in fonts]


def _better_font_format(font: Path, assets: set[Path]) -> bool:
    """True when `assets` holds the same font in a format the browser would load instead."""
    if font.suffix not in FONT_PREFERENCE:
        return False
    better = FONT_PREFERENCE[:FONT_PREFERENCE.index(font.suffix)]
    return any(font.with_suffix(suffix) in assets for suffix in better)


def page_weights(site: Path) -> list[dict]:
    """One row per page: page, html bytes, asset bytes, image bytes, total, number of assets."""
    site = site.resolve()
    rows = []
    for page in pages(site):
        assets = page_assets(site, page)
        asset_bytes = sum(a.stat().st_size for a in assets)
        rows.append({
            "page": str(page.relative_to(site)),
            "html": page.stat().st_size,
            "assets": asset_bytes,
            "images": sum(a.stat().st_size for a in assets if a.suffix.lower() in IMAGE_SUFFIXES),
            "total": page.stat().st_size + asset_bytes,
            "count": len(assets),
        })
    return rows


def content_images(site: Path) -> list[tuple[str, int]]:
    """(path, bytes) of every figure the pages show (Sphinx copies them to _images)."""
    return sorted(((str(p.relative_to(site)), p.stat().st_size)
                   for p in (site / "_images").rglob("*") if p.is_file()),
                  key=lambda item: -item[1]) if (site / "_images").is_dir() else []


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", nargs="?", default="_build/html")
    parser.add_argument("--limit-mb", type=float, default=1.5)
    args = parser.parse_args(argv[1:])
    site = Path(args.site)
    if not (site / "index.html").is_file():
        print(f"No built site at {site}: run 'make book' first.")
        return 2
    rows = sorted(page_weights(site), key=lambda r: -r["total"])
    kb = 1024
    print(f"{'page':44} {'html KB':>8} {'assets KB':>10} {'images KB':>10} {'total KB':>9} {'files':>6}")
    for r in rows:
        print(f"{r['page']:44} {r['html'] / kb:8.0f} {r['assets'] / kb:10.0f} "
              f"{r['images'] / kb:10.0f} {r['total'] / kb:9.0f} {r['count']:6d}")
    images = content_images(site.resolve())
    if images:
        print(f"\nLargest figures ({len(images)} in all):")
        for name, size in images[:5]:
            print(f"  {size / kb:7.0f} KB  {name}")
    over = [r for r in rows if r["total"] > args.limit_mb * 1024 * 1024]
    print(f"\n{len(rows)} pages; heaviest {rows[0]['total'] / kb / kb:.2f} MB; "
          f"{len(over)} over {args.limit_mb:g} MB.")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
