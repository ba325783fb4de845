"""Page weight from the files (scripts/page_weight.py): no page with its assets over 1.5 MB;
figures are compact image files. The browser test measures the same in Chromium."""
import subprocess
import sys

from conftest import ROOT, SITE, toc_pages

sys.path.insert(0, str(ROOT / "scripts"))
from page_weight import content_images, page_weights  # noqa: E402

MAX_PAGE_BYTES = int(1.5 * 1024 * 1024)
MAX_FIGURE_BYTES = 500 * 1024
FIGURE_FORMATS = {".png", ".svg", ".jpg", ".jpeg", ".gif", ".webp"}


def test_no_page_over_1_5_mb(built_book):
    rows = page_weights(built_book)
    assert {r["page"] for r in rows} >= {f"{p}.html" for p in toc_pages()}
    heavy = [f"{r['page']}: {r['total'] / 2**20:.1f} MB" for r in rows if r["total"] > MAX_PAGE_BYTES]
    assert heavy == []


def test_figures_are_compact(built_book):
    for name, size in content_images(built_book):
        assert name[name.rfind("."):].lower() in FIGURE_FORMATS, f"{name}: not a web image format"
        assert size <= MAX_FIGURE_BYTES, f"{name}: {size / 1024:.0f} KB (use SVG or a smaller PNG)"


def test_report_script_prints_every_page(built_book):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "page_weight.py"), str(SITE)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    for page in toc_pages():
        assert f"{page}.html" in out.stdout
    assert "0 over 1.5 MB" in out.stdout
