"""The Chinese edition (_build/html/zh): built from the same sources and the same execution as the
English one, every message translated, the glossary's names used, readable and searchable in a
browser, and reachable from every English page by the language switch (and back)."""
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import nbformat
import pytest
from bs4 import BeautifulSoup
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import BOOK, ROOT, toc_pages

sys.path.insert(0, str(ROOT / "scripts"))
import i18n  # noqa: E402

pytestmark = pytest.mark.book
CJK = re.compile(r"[\u4e00-\u9fff]")
BOOK_CATALOGS = sorted((i18n.LOCALE / "book").glob("*.po"))


def soup(site: Path, page: str) -> BeautifulSoup:
    return BeautifulSoup((site / f"{page}.html").read_text(encoding="utf-8"), "html.parser")


def article(page_soup):
    return page_soup.select_one("article.bd-article")


# ---------------------------------------------------------------------------- the catalogs
def test_every_message_of_the_book_is_translated(built_book):
    """A fresh extraction from the chapter sources against the catalogs: a paragraph added or
    changed in English and not yet translated fails here."""
    proc = subprocess.run(BOOK + ["untranslated"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("0 untranslated message(s)")


@pytest.mark.parametrize("catalog", BOOK_CATALOGS, ids=lambda p: p.stem)
def test_translations_keep_roles_math_numbers_and_terms(catalog):
    """Each translation keeps its message's glued values, references, citations, math and code,
    types no number of its own, and links glossary terms by their Chinese names."""
    assert i18n.check(catalog) == []


def test_the_checker_finds_what_a_translation_breaks():
    """The check above can fail: each kind of damage is reported."""
    msgid = ("Here $\\eta$ is the {term}`learning rate (学习率)`; momentum reaches "
             "{glue:text}`momentum-before:.3f` after 60 steps ({eq}`momentum-lecture`).")
    good = ("这里 $\\eta$ 是{term}`学习率 <learning rate (学习率)>`；动量在 60 步后达到 "
            "{glue:text}`momentum-before:.3f`（{eq}`momentum-lecture`）。")
    assert i18n.problems(msgid, good) == []
    broken = {
        "roles": good.replace("{glue:text}`momentum-before:.3f`", "0.526"),
        "math": good.replace("$\\eta$", "η"),
        "numbers": good.replace("60 步后", "70 步后"),
        "term": good.replace("{term}`学习率 <learning rate (学习率)>`", "{term}`步长 <learning rate (学习率)>`"),
        "chinese": msgid,
        "translated": "",
    }
    for kind, text in broken.items():
        assert i18n.problems(msgid, text), f"{kind}: not reported"
    assert i18n.problems("A batch of examples.", "一个批量的样本。")   # the LeeDL variant


# ---------------------------------------------------------------------------- the built pages
def glued(page_soup) -> Counter:
    return Counter(s.get_text() for s in article(page_soup).select("span.pasted-text"))


@pytest.mark.parametrize("page", toc_pages())
def test_same_numbers_as_the_english_page(built_book, page):
    """Every glued value of the English page is on the Chinese page, as often: one execution."""
    english, chinese = glued(soup(built_book, page)), glued(soup(built_book / "zh", page))
    assert chinese == english


@pytest.mark.parametrize("page", toc_pages())
def test_prose_is_chinese(built_book, page):
    """No English paragraph, heading, list item, caption or alt text is left on a Chinese page
    (code, outputs, math and the reference list stay as they are)."""
    body = article(soup(built_book / "zh", page))
    for skip in body.select("div.cell_output, div.highlight, pre, .math, mjx-container, "
                            "div.citation, div.bibliography, span.pasted-text, code"):
        skip.decompose()
    english = []
    for node in body.select("p, h1, h2, h3, h4, li, dt, dd, figcaption, th, td, .admonition-title"):
        text = " ".join(node.get_text(" ").split())
        if len(re.findall(r"[A-Za-z]{3,}", text)) >= 4 and not CJK.search(text):
            english.append(text[:100])
    alts = [img.get("alt", "") for img in article(soup(built_book / "zh", page)).select("img")]
    english += [f"alt: {a[:80]}" for a in alts if not CJK.search(a)]
    assert english == []


def test_pages_declare_their_language(built_book):
    for page in toc_pages():
        assert soup(built_book, page).html["lang"] == "en"
        assert soup(built_book / "zh", page).html["lang"] == "zh-CN"


def glossary_names(site: Path) -> dict[str, str]:
    """Anchor id -> the term as the glossary page shows it."""
    return {dt["id"]: " ".join(dt.get_text().replace("#", "").split())
            for dt in article(soup(site, "book/glossary")).select("dl.glossary dt[id]")}


def test_glossary_gives_each_term_its_chinese_name_first(built_book):
    english, chinese = glossary_names(built_book), glossary_names(built_book / "zh")
    assert english.keys() == chinese.keys() and len(english) == len(i18n.terms())
    expected = {t.source: t.heading for t in i18n.terms()}
    for anchor, shown in english.items():
        assert chinese[anchor] == expected[shown], anchor


@pytest.mark.parametrize("page", toc_pages())
def test_chinese_pages_name_terms_as_the_glossary_does(built_book, page):
    """A link to a glossary term reads as the glossary's Chinese name; the LeeDL book's other
    names (批量, 局部极小值) appear only where the glossary mentions them."""
    zh_name = {anchor: shown.split("（")[0] for anchor, shown in glossary_names(built_book / "zh").items()}
    body = article(soup(built_book / "zh", page))
    for link in body.select('a[href*="glossary.html#term-"]'):
        anchor = unquote(urlsplit(link["href"]).fragment)
        assert link.get_text().strip().startswith(zh_name[anchor]), (link.get_text(), zh_name[anchor])
    if page != "book/glossary":
        text = body.get_text()
        for term in i18n.terms():
            for variant in term.variants:
                assert variant not in text, f"{variant} on {page}: the glossary writes {term.zh}"


@pytest.mark.parametrize("page", toc_pages())
def test_language_switch_links_the_same_page(built_book, page):
    for site, other in ((built_book, built_book / "zh"), (built_book / "zh", built_book)):
        [switch] = soup(site, page).select("a.btn-language-switch")
        target = (site / page).parent / switch["href"]
        assert target.resolve() == (other / f"{page}.html").resolve()


@pytest.mark.parametrize("page", [p for p in toc_pages() if "code-cell" in
                                  (ROOT / f"{p}.md").read_text(encoding="utf-8")])
def test_downloaded_notebook_carries_the_chinese_prose(built_book, page):
    """The Chinese page's .ipynb: its Markdown is the Chinese page's, its code the same code."""
    english = nbformat.read(built_book / "_sources" / f"{page}.ipynb", as_version=4)
    chinese = nbformat.read(built_book / "zh" / "_sources" / f"{page}.ipynb", as_version=4)
    def code(nb):     # after the setup cell, which installs the course package from its own edition
        return [c.source for c in nb.cells[1:] if c.cell_type == "code"]
    assert code(chinese) == code(english) and code(english)
    markdown = [c.source for c in chinese.cells if c.cell_type == "markdown"]
    assert markdown and all(CJK.search(m) for m in markdown)
    assert "/zh/" in "".join(markdown)          # its links go into the Chinese site


def test_search_index_has_chinese_words(built_book):
    index = (built_book / "zh" / "searchindex.js").read_text(encoding="utf-8")
    data = json.loads(index[index.index("(") + 1:index.rindex(")")])
    docs = data["docnames"]
    for word, chapter in (("动量", "book/momentum"), ("学习率", "book/lr-scheduling"),
                          ("动量系数", "book/momentum")):
        hits = []
        for where in ("terms", "titleterms"):           # words of the text, words of a title
            found = data[where].get(word)
            hits += [found] if isinstance(found, int) else found or []
        assert chapter in [docs[i] for i in hits], f"{word}: {[docs[i] for i in hits]}"


# ---------------------------------------------------------------------------- in a browser
GLYPHS_JS = """
// Draw two different CJK characters in the page's own body font: with no CJK font both are the
// same empty box ("tofu"); with one, their pixels differ and carry ink.
const font = getComputedStyle(document.querySelector('article.bd-article p') || document.body).font;
const draw = (ch) => {
  const c = document.createElement('canvas'); c.width = 64; c.height = 64;
  const g = c.getContext('2d'); g.font = font.replace(/\\d+(\\.\\d+)?px/, '48px');
  g.fillText(ch, 4, 52);
  return [...g.getImageData(0, 0, 64, 64).data].filter((v, i) => i % 4 === 3);
};
const a = draw('动'), b = draw('量'), tofu = draw('\\u{10FFFD}');
const differ = (x, y) => x.some((v, i) => v !== y[i]);
return {ink: a.some(v => v > 0), distinct: differ(a, b), notTofu: differ(a, tofu), font};
"""


@pytest.mark.parametrize("page", toc_pages())
def test_chinese_page_renders_cjk(browser, site_url, screenshot_dir, page):
    browser.get(urljoin(site_url, f"zh/{page}.html"))
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    state = browser.execute_script(GLYPHS_JS)
    assert state["ink"] and state["distinct"] and state["notTofu"], state
    # (test_site_browser.py visits every zh/ page too and leaves a full-page screenshot of each.)


def test_switch_goes_to_the_other_edition_and_back(browser, site_url):
    browser.get(urljoin(site_url, "book/momentum.html"))
    browser.find_element(By.CSS_SELECTOR, "a.btn-language-switch").click()
    WebDriverWait(browser, 30).until(lambda d: d.current_url.endswith("/zh/book/momentum.html"))
    assert len(browser.window_handles) == 1                 # the same tab
    assert browser.find_element(By.CSS_SELECTOR, "article.bd-article h1").text.startswith("动量")
    browser.find_element(By.CSS_SELECTOR, "a.btn-language-switch").click()
    WebDriverWait(browser, 30).until(lambda d: urlsplit(d.current_url).path == "/book/momentum.html")


@pytest.mark.parametrize("query, chapters", [("动量", ["book/momentum"]),
                                             ("学习率", ["book/adaptive-lr", "book/lr-scheduling"])])
def test_chinese_search_finds_the_chapter(browser, site_url, screenshot_dir, query, chapters):
    from test_site_browser import search_hits
    hits = search_hits(browser, site_url, query, "zh/")
    assert any(c in hits[:3] for c in chapters), f"search for {query} gave {hits}"
    (screenshot_dir / f"zh-search-{query}.png").write_bytes(browser.get_screenshot_as_png())


@pytest.mark.parametrize("assignment", ["optimizers", "classification", "backprop"])
def test_chinese_assignments_page_offers_the_chinese_notebooks(built_book, assignment):
    """The notebooks the Chinese assignments page links are the student notebooks translated
    (instructions in Chinese, every cell, test and point the same); the English page's are the
    released ones, byte for byte; visible_cases.json is the same file in both."""
    from autograder.notebook_i18n import load_catalog, translate

    def linked(site, name):       # the download of `name` in this assignment's row of the table
        [row] = [tr for tr in soup(site, "book/assignments").select("tr")
                 if tr.select_one(f'a.download[href$="/{assignment}.ipynb"]')]
        [href] = {a["href"] for a in row.select("a.download") if a["href"].endswith(f"/{name}")}
        return (site / "book" / href).resolve()

    released = ROOT / "assignments" / assignment
    english = linked(built_book, f"{assignment}.ipynb")
    chinese = linked(built_book / "zh", f"{assignment}.ipynb")
    assert english.read_bytes() == (released / f"{assignment}.ipynb").read_bytes()
    expected = translate(nbformat.read(released / f"{assignment}.ipynb", as_version=4),
                         load_catalog(assignment, "zh_CN", root=ROOT), assignment)
    assert nbformat.read(chinese, as_version=4) == expected
    assert any(CJK.search(c.source) for c in expected.cells if c.cell_type == "markdown")
    assert linked(built_book / "zh", "visible_cases.json").read_bytes() == \
           (released / "visible_cases.json").read_bytes()
