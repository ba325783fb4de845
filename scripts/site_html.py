"""Reading the built site: its pages, and the local files and anchors each page refers to."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

# (tag, attribute) pairs that point at another file; `a` is a link, the rest load with the page.
LINK_ATTRS = {("a", "href")}
ASSET_ATTRS = {("link", "href"), ("script", "src"), ("img", "src"), ("source", "src"),
               ("video", "src"), ("audio", "src"), ("iframe", "src"), ("embed", "src"),
               ("object", "data")}
# <link rel=...> kinds the browser fetches with the page (rel=icon: the favicon, fetched too).
LOADED_RELS = {"stylesheet", "preload", "modulepreload", "icon", "shortcut"}
SKIP_DIRS = {"_static", "_sources", "_downloads", "_images"}   # assets, not pages
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]+)['"]?\s*\)|@import\s+['"]([^'"]+)['"]""")


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.assets: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key) and (key == "id" or tag == "a"):
                self.ids.add(attrs[key])
        for attr, value in attrs.items():
            if value is None:
                continue
            if (tag, attr) in LINK_ATTRS:
                self.links.append(value)
            elif (tag, attr) in ASSET_ATTRS:
                rel = set((attrs.get("rel") or "").lower().split())
                if tag == "link" and "preconnect" in rel:
                    continue
                if tag == "link" and not rel & LOADED_RELS:
                    self.links.append(value)     # rel=next/prev/search/index: a page, not loaded
                    continue
                self.assets.append(value)


def parse(page: Path) -> _Refs:
    parser = _Refs()
    parser.feed(page.read_text(encoding="utf-8", errors="replace"))
    return parser


def pages(site: Path) -> list[Path]:
    """Every HTML page of the site (not the vendored HTML under _static)."""
    return sorted(p for p in site.rglob("*.html")
                  if not SKIP_DIRS.intersection(p.relative_to(site).parts))


def is_local(ref: str) -> bool:
    parts = urlsplit(ref)
    return not parts.scheme and not parts.netloc and not ref.startswith("//")


def resolve(base: Path, ref: str) -> tuple[Path, str]:
    """(file, fragment) that a local reference from file `base` points to."""
    parts = urlsplit(ref)
    path = unquote(parts.path)
    target = (base.parent / path).resolve() if path else base.resolve()
    if target.is_dir():
        target = target / "index.html"
    return target, unquote(parts.fragment)


def css_refs(css: Path) -> list[str]:
    text = css.read_text(encoding="utf-8", errors="replace")
    return [a or b for a, b in CSS_URL.findall(text) if not (a or b).startswith("data:")]
