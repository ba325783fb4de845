"""Check every local link and asset reference of the built site; it never leaves the site.

    python scripts/check_links.py [_build/html]

Prints each broken reference (missing file, or missing #anchor in an HTML target) and exits 1
when there is any. External links (http, https, mailto) are counted, not followed.
"""
from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

from site_html import css_refs, is_local, pages, parse, resolve


@lru_cache(maxsize=None)
def _ids(page: Path) -> frozenset[str]:
    return frozenset(parse(page).ids)


def broken_links(site: Path) -> tuple[list[str], int]:
    """(["page: ref (why)", ...], number of external links skipped)."""
    site = site.resolve()
    broken, external = [], 0
    for page in pages(site):
        refs = parse(page)
        for ref in refs.links + refs.assets:
            if not is_local(ref):
                external += 1
                continue
            target, fragment = resolve(page, ref)
            where = f"{page.relative_to(site)}: {ref}"
            if site not in target.parents and target != site:
                broken.append(f"{where} (outside the site)")
            elif not target.is_file():
                broken.append(f"{where} (no such file)")
            elif fragment and target.suffix == ".html" and fragment not in _ids(target):
                broken.append(f"{where} (no anchor #{fragment})")
            elif target.suffix == ".css":
                for inner in css_refs(target):
                    if is_local(inner) and not resolve(target, inner)[0].is_file():
                        broken.append(f"{target.relative_to(site)}: {inner} (no such file)")
    return sorted(set(broken)), external


def main(argv: list[str]) -> int:
    site = Path(argv[1] if len(argv) > 1 else "_build/html")
    if not (site / "index.html").is_file():
        print(f"No built site at {site}: run 'make book' first.")
        return 2
    broken, external = broken_links(site)
    print(f"{len(pages(site))} pages checked; {external} external links not followed.")
    for line in broken:
        print("BROKEN", line)
    print(f"{len(broken)} broken local references.")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
