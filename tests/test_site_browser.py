"""The built site in a real browser (headless Chromium) with the network cut.

Each page is loaded once from a localhost server; the tests below read what that visit recorded:
console errors, every request the page made, the math MathJax typeset, the figures, and the
bytes transferred. A full-page screenshot of each visit goes to _build/screenshots/, with what
each visit recorded in pages.json beside them.
"""
import json
import re
import sys
from urllib.parse import urljoin, urlsplit

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import ROOT, SITE, toc_pages

sys.path.insert(0, str(ROOT / "scripts"))

# First-load weight of a page: its HTML plus every script, stylesheet, font and image the
# browser fetched for it (all figures included), uncompressed. Readers on slow or distant links
# (GitHub Pages from mainland China) pay for every byte.
MAX_PAGE_BYTES = int(1.5 * 1024 * 1024)
LOCAL_SCHEMES = {"data", "blob", "about", "chrome", "devtools"}

# Runs in the page once it has loaded: wait for MathJax (when the page uses it), web fonts and
# images, then report what the tests check.
PAGE_STATE_JS = """
const done = arguments[arguments.length - 1];
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const article = document.querySelector('article.bd-article') || document.body;
  const imgs = [...article.querySelectorAll('img')];
  imgs.forEach(img => { img.loading = 'eager'; });
  await Promise.all(imgs.map(img => img.complete ? null :
      new Promise(ok => { img.onload = ok; img.onerror = ok; })));
  await document.fonts.ready;
  const prose = article.cloneNode(true);
  prose.querySelectorAll('pre, code, script, mjx-container').forEach(n => n.remove());
  const maths = [...article.querySelectorAll('.math')];
  // (images were made eager above, so every figure of the page counts.)
  const resources = performance.getEntriesByType('resource');
  const nav = performance.getEntriesByType('navigation')[0];
  done({
    weight: nav.decodedBodySize + resources.reduce((sum, r) => sum + r.decodedBodySize, 0),
    resources: resources.map(r => [r.name, r.decodedBodySize]).sort((a, b) => b[1] - a[1]),
    mathjax: !!(window.MathJax && MathJax.startup),
    math: maths.length,
    mathTypeset: maths.filter(m => m.querySelector('mjx-container')).length,
    mathErrors: article.querySelectorAll('mjx-merror').length,
    rawMath: ['$$', '\\\\[', '\\\\(', '\\\\begin{'].filter(s => prose.textContent.includes(s)),
    images: imgs.map(img => ({src: img.getAttribute('src'), alt: img.getAttribute('alt'),
                              width: img.naturalWidth, height: img.naturalHeight})),
  });
})().catch(e => done({error: String(e)}));
"""


def _screenshot(driver, path):
    """Full-page screenshot: make the viewport as tall as the page, then capture it.

    (Capturing beyond the viewport with a clip shifts the theme's fixed layout sideways.)"""
    width, height = driver.execute_script(
        "return [window.innerWidth, document.documentElement.scrollHeight]")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    try:
        path.write_bytes(driver.get_screenshot_as_png())
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _network(perf_log, site_url):
    """Requests, failures and transferred bytes from Chromium's performance log."""
    requests, failed, transferred = {}, [], 0
    for entry in perf_log:
        message = json.loads(entry["message"])["message"]
        method, params = message["method"], message.get("params", {})
        if method == "Network.requestWillBeSent":
            requests[params["requestId"]] = params["request"]["url"]
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            failed.append(f"{requests.get(params['requestId'], '?')}: {params['errorText']}")
        elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
            failed.append(f"{params['response']['url']}: HTTP {params['response']['status']}")
        elif method == "Network.loadingFinished":
            transferred += params.get("encodedDataLength", 0)
    outside = sorted({url for url in requests.values()
                      if not url.startswith(site_url)
                      and urlsplit(url).scheme not in LOCAL_SCHEMES})
    return outside, failed, transferred


@pytest.fixture(scope="session")
def visit(browser, site_url, screenshot_dir):
    """visit(docname) -> what loading that page recorded (cached: each page is loaded once)."""
    seen = {}

    def load(docname):
        if docname not in seen:
            browser.get_log("browser"), browser.get_log("performance")   # drop older entries
            browser.get(urljoin(site_url, f"{docname}.html"))
            WebDriverWait(browser, 30).until(
                lambda d: d.execute_script("return document.readyState") == "complete")
            browser.set_script_timeout(60)
            state = browser.execute_async_script(PAGE_STATE_JS)
            _screenshot(browser, screenshot_dir / f"{docname.replace('/', '__')}.png")
            outside, failed, transferred = _network(browser.get_log("performance"), site_url)
            errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
            seen[docname] = dict(state, outside=outside, failed=failed,
                                 transferred=transferred, console_errors=errors)
            (screenshot_dir / "pages.json").write_text(json.dumps(seen, indent=1))
        return seen[docname]
    return load


def test_page_loads_offline_without_errors(visit, site_page):
    page = visit(site_page)
    assert "error" not in page, page.get("error")
    assert page["outside"] == [], f"requests that left the site: {page['outside']}"
    assert page["failed"] == [], f"failed requests: {page['failed']}"
    assert page["console_errors"] == [], f"console errors: {page['console_errors']}"
    assert 0 < page["transferred"], "nothing transferred"


def test_page_weight_at_most_1_5_mb(visit, site_page):
    """Measured in the browser (Resource Timing: decoded sizes of the document and of every
    resource it fetched); pages.json in _build/screenshots/ lists them per page."""
    page = visit(site_page)
    heaviest = ", ".join(f"{url.split('/')[-1]} {size // 1024} KB" for url, size in page["resources"][:6])
    assert page["weight"] <= MAX_PAGE_BYTES, (
        f"{site_page}: {page['weight'] / 2**20:.2f} MB on first load (heaviest: {heaviest})")
    # The uncompressed bytes the network layer saw agree (the test server does not compress).
    assert abs(page["transferred"] - page["weight"]) < 0.1 * page["weight"] + 50_000


def test_page_weight_script_matches_the_browser(visit, site_page, built_book):
    """scripts/page_weight.py estimates from the files what the browser fetches: never less,
    and not much more (it counts the MathJax fonts a page's TeX is likely to need)."""
    from page_weight import page_weights

    rows = {r["page"]: r for r in page_weights(built_book)}
    measured = visit(site_page)["weight"]
    estimate = rows[f"{site_page}.html"]["total"]
    assert measured * 0.97 <= estimate <= measured * 1.15 + 20_000, (
        f"{site_page}: script says {estimate} bytes, the browser fetched {measured}")


def test_math_is_typeset_by_local_mathjax(visit, toc_page):
    page = visit(toc_page)
    assert page["rawMath"] == [], f"untypeset TeX delimiters in the text: {page['rawMath']}"
    if page["math"]:
        assert page["mathjax"], "page has math but MathJax did not start"
        assert page["mathTypeset"] == page["math"], (
            f"{page['math'] - page['mathTypeset']} of {page['math']} math elements not typeset")
        assert page["mathErrors"] == 0, f"{page['mathErrors']} MathJax errors (red TeX)"


def test_figures_load_and_have_alt_text(visit, toc_page):
    for img in visit(toc_page)["images"]:
        assert img["width"] > 0 and img["height"] > 0, f"figure did not load: {img['src']}"
        alt = (img["alt"] or "").strip()
        # Sphinx writes the file name as alt when none is given; that is not alt text.
        assert alt and alt.split("/")[-1] != img["src"].split("/")[-1], (
            f"figure {img['src']} has no alt text (code cell metadata mystnb.image.alt, or "
            f":alt: on the figure)")


def test_math_page_renders_from_local_folder(browser, built_book):
    """Opened straight from the folder (file://): MathJax still loads from the site itself."""
    pages = [p for p in toc_pages() if 'class="math' in (SITE / f"{p}.html").read_text()]
    if not pages:
        pytest.skip("no page has math yet")
    browser.get_log("performance")
    browser.get((built_book / f"{pages[0]}.html").as_uri())
    browser.set_script_timeout(60)
    state = browser.execute_async_script(PAGE_STATE_JS)
    outside, failed, _ = _network(browser.get_log("performance"), built_book.as_uri())
    assert outside == [] and failed == []
    assert state["math"] > 0 and state["mathTypeset"] == state["math"]


def search_hits(browser, site_url, query, edition=""):
    """Search one edition's site ("" or "zh/") in the browser; the pages found, in rank order."""
    browser.get(urljoin(site_url, f"{edition}search.html?q={query}"))
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(
        By.CSS_SELECTOR, "#search-results .search-summary") and d.find_element(
        By.CSS_SELECTOR, "#search-results .search-summary").text.strip())
    return [urlsplit(a.get_attribute("href")).path.removeprefix(f"/{edition}").removesuffix(".html")
            for a in browser.find_elements(By.CSS_SELECTOR, "#search-results ul.search li > a")]


@pytest.mark.parametrize("query, chapter", [("momentum", "book/momentum"),
                                            ("softmax", "book/classification")])
def test_search_finds_the_chapter(browser, site_url, query, chapter):
    hits = search_hits(browser, site_url, query)
    assert chapter in hits[:3], f"search for {query!r} gave {hits}"
    # Snippets are plain text: no TeX source of the pages' math.
    WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(
        By.CSS_SELECTOR, "#search-results p.context")) >= min(len(hits), 5))
    snippets = [p.text for p in browser.find_elements(By.CSS_SELECTOR, "#search-results p.context")]
    tex = [s for s in snippets if re.search(r"\\[()\[\]]|\\[A-Za-z]+|\$\$", s)]
    assert tex == [], f"raw TeX in search snippets: {tex[:3]}"


def _docname(url, site_url):
    return urlsplit(url).path.removeprefix(urlsplit(site_url).path).removesuffix(".html")


def _arrive(browser, site_url, leaving):
    """Wait until the browser has left page `leaving` and the new page has loaded; its name."""
    WebDriverWait(browser, 30).until(
        lambda d: _docname(d.current_url, site_url) not in (leaving, "", "index")
        and d.execute_script("return document.readyState") == "complete"
        and d.find_elements(By.CSS_SELECTOR, "article.bd-article h1"))
    return _docname(browser.current_url, site_url)


def _follow(browser, site_url, selector):
    """Click the `selector` links from page to page; the page names visited, in order."""
    walked = [_arrive(browser, site_url, None)]
    while links := browser.find_elements(By.CSS_SELECTOR, selector):
        links[0].click()
        walked.append(_arrive(browser, site_url, walked[-1]))
        assert len(walked) <= len(toc_pages()), f"{selector} links loop: {walked}"
    return walked


def test_next_and_previous_links_walk_the_toc_in_order(browser, site_url):
    browser.get(site_url)                       # index.html redirects to the root page
    forward = _follow(browser, site_url, "a.right-next")
    assert forward == toc_pages()
    assert _follow(browser, site_url, "a.left-prev") == forward[::-1]


def test_sidebar_reaches_every_chapter(browser, site_url):
    root, *chapters = toc_pages()
    browser.get(urljoin(site_url, f"{root}.html"))
    here = _arrive(browser, site_url, None)
    for chapter in chapters:
        links = [a for a in browser.find_elements(By.CSS_SELECTOR, "nav.bd-docs-nav a.reference.internal")
                 if _docname(a.get_attribute("href"), site_url) == chapter]
        assert links, f"no sidebar link from {here} to {chapter}"
        links[0].click()
        here = _arrive(browser, site_url, here)
        assert here == chapter


# ---------------------------------------------------------------------------- every screen
WIDTHS = (390, 768, 1280)          # a phone, a tablet, a laptop (CSS pixels)

# Whatever of a table, display equation, code block or figure does not fit: off the screen, cut
# by an ancestor that hides overflow, or in a scroll box that is itself wider than the screen.
# A display equation, code block or output wider than its column may scroll inside its own box; a
# table may not (a column scrolled out of sight, like the assignments' Download links, is missed).
OVERFLOW_JS = """
const vw = document.documentElement.clientWidth;
const out = [];
const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
    (e.className && typeof e.className === 'string' ? '.' + e.className.trim().split(/\\s+/).join('.') : '');
const visible = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0 &&
    getComputedStyle(e).visibility !== 'hidden'; };
const article = document.querySelector('article.bd-article') || document.body;
const items = article.querySelectorAll(
    'table, pre, mjx-container[display="true"], div.math, .MathJax_Display, img, .cell_output');
for (const e of items) {
  if (!visible(e)) continue;
  const r = e.getBoundingClientRect();
  let fits = true, why = '';
  if (e.tagName === 'TABLE') {
    const column = e.closest('.pst-scrollable-table-container, .table-wrapper') || e.parentElement;
    const room = Math.min(column.clientWidth, article.clientWidth);
    if (e.scrollWidth > room + 1 || r.width > room + 1) {
      out.push(`${name(e)}: ${Math.round(r.width)} px wide in a ${room} px column — ` +
               e.textContent.trim().slice(0, 60));
      continue;
    }
  }
  for (let a = e; a && a !== document.documentElement; a = a.parentElement) {
    const ox = getComputedStyle(a).overflowX;
    const ar = a.getBoundingClientRect();
    if ((ox === 'auto' || ox === 'scroll') && a.scrollWidth > a.clientWidth + 1) {
      // scrolls in its own box: fine if that box is on screen
      if (ar.left < -1 || ar.right > vw + 1) { fits = false; why = 'scroll box off screen ' + name(a); }
      break;
    }
    if ((ox === 'hidden' || ox === 'clip') && a !== e && (r.right > ar.right + 1 || r.left < ar.left - 1)) {
      fits = false; why = 'clipped by ' + name(a); break;
    }
  }
  if (fits && (r.right > vw + 1 || r.left < -1) && !why) {
    // not inside any scroll box that scrolls: off screen unless an ancestor scrolls it
    let scrolled = false;
    for (let a = e.parentElement; a; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if ((ox === 'auto' || ox === 'scroll') && a.scrollWidth > a.clientWidth + 1) { scrolled = true; break; }
    }
    if (!scrolled) { fits = false; why = `off screen (${Math.round(r.left)}..${Math.round(r.right)} of ${vw})`; }
  }
  if (!fits) out.push(name(e) + ': ' + why + ' — ' + (e.textContent || e.getAttribute('src') || '').trim().slice(0, 60));
}
const page = document.scrollingElement;
if (page.scrollWidth > page.clientWidth + 1) out.push(`page scrolls sideways: ${page.scrollWidth} > ${page.clientWidth}`);
return out;
"""


# The search fields and buttons a reader sees outside the article (the search page's own form
# is in the page content).
SEARCH_BOXES_JS = """
return [...document.querySelectorAll('.search-button-field, .search-button, input[type=search]')]
  .filter(e => (e.closest('.bd-header-article') || !e.closest('.bd-article-container'))
               && !e.closest('dialog'))
  .filter(e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0 &&
                 getComputedStyle(e).visibility !== 'hidden'; })
  .map(e => e.className + ' at ' + Math.round(e.getBoundingClientRect().left) + ',' +
            Math.round(e.getBoundingClientRect().top));
"""


@pytest.fixture
def narrow_browser(browser):
    """The same browser, its viewport set per width (a phone and a tablet as mobile devices);
    back to the normal window after each test."""
    def at(width):
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 1000})
        return browser
    yield at
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.mark.parametrize("width", WIDTHS)
def test_nothing_clipped_or_off_screen(narrow_browser, site_url, screenshot_dir, site_page, width):
    driver = narrow_browser(width)
    driver.get(urljoin(site_url, f"{site_page}.html"))
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete")
    driver.set_script_timeout(60)
    driver.execute_async_script(PAGE_STATE_JS)              # MathJax typeset, images loaded
    problems = driver.execute_script(OVERFLOW_JS)
    searches = driver.execute_script(SEARCH_BOXES_JS)
    folder = screenshot_dir / str(width)
    folder.mkdir(exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": min(height, 30000), "deviceScaleFactor": 1, "mobile": width < 1000})
    (folder / f"{site_page.replace('/', '__')}.png").write_bytes(driver.get_screenshot_as_png())
    assert problems == [], f"at {width} px:\n" + "\n".join(problems)
    # (The search page has its own form in the content; it may hide the header's button.)
    allowed = {0, 1} if site_page == "search" else {1}
    assert len(searches) in allowed, f"at {width} px, {len(searches)} search boxes: {searches}"
