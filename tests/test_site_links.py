"""Every local link, asset and #anchor of the built site resolves (Sphinx's own nitpicky check of
cross-references runs in the build: `-W -n`). External links are not followed."""
import sys

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
