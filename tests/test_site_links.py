"""Every local link, asset and #anchor of the built site resolves (Sphinx's own nitpicky check of
cross-references runs in the build: `-W -n`). External links are not followed."""
import re
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from check_links import broken_links  # noqa: E402


def test_no_broken_local_links(built_book):
    broken, _ = broken_links(built_book)
    assert broken == [], "broken local references:\n" + "\n".join(broken)


def test_link_check_catches_a_broken_link(tmp_path):
    """The checker itself: a missing page, a missing anchor and a missing image are reported."""
    (tmp_path / "index.html").write_text(
        '<a href="other.html#there">ok</a> <a href="gone.html">x</a> '
        '<a href="other.html#nowhere">y</a> <img src="_images/none.png" alt="n">'
        '<a href="https://example.org/">external</a>')
    (tmp_path / "other.html").write_text('<h1 id="there">Other</h1>')
    broken, external = broken_links(tmp_path)
    assert broken == ["index.html: _images/none.png (no such file)",
                      "index.html: gone.html (no such file)",
                      "index.html: other.html#nowhere (no anchor #nowhere)"]
    assert external == 1


def _text(fragment):
    import html as html_lib
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", "", fragment)).split())


def test_one_citation_style(built_book, toc_page):
    """A citation in the text reads as the label of its entry in the reference list
    ("[Polyak, 1964]" both), not "[Polyak, 1964]" in the text and "[Pol64]" in the list."""
    page = (built_book / f"{toc_page}.html").read_text(encoding="utf-8")
    labels = {}
    for entry_id, body in re.findall(
            r'<div class="citation" id="([^"]+)" role="doc-biblioentry">(.*?)</span>\s*</span>',
            page, re.S):
        label = re.search(r'class="label"><span class="fn-bracket">\[</span>(.*?)<span class="fn-bracket">\]',
                          body, re.S)
        labels[entry_id] = _text(label.group(1))
    cites = re.findall(r'<span class="bibtex-citation"[^>]*>(.*?)</span>', page, re.S)
    if not cites:
        pytest.skip("no citations on this page")
    for cite in cites:
        for target, text in re.findall(r'<a class="reference internal" href="#([^"]+)"[^>]*>(.*?)</a>', cite, re.S):
            assert target in labels, f"citation {_text(text)!r} links to no list entry"
            assert _text(text) == labels[target], (
                f"cited as {_text(text)!r} in the text, listed as [{labels[target]}]")
            assert re.fullmatch(r"[^,]+, \d{4}[a-z]?", labels[target]), labels[target]
