"""Browser tests of the built book (`make book` writes _build/html).

A local web server serves _build/html on 127.0.0.1 and Debian's Chromium, driven by
Playwright, opens every page. Any request to another host is blocked and reported:
the book must render with no network (MathJax and every other asset are served from
the site itself). Run with `pytest tests -m site` after `make book` (`make test` does both).

Environment: CHROMIUM (path of the browser, default /usr/bin/chromium), CI=true (a
missing build fails instead of skipping).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "_build" / "html"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
OTHER_PAGES = ["book/intro", "book/getting_started", "book/instructors", "book/glossary",
               "book/status", "book/references"]

# Console errors that may be ignored, by exact text. Both errors that Jupyter Book 1.x's
# theme logs by default are fixed in _config.yml (html_context.default_mode, and
# sphinx_thebe left out of the extensions), so nothing is allowed.
ALLOWED_CONSOLE_ERRORS: tuple[str, ...] = ()

LOCAL_HOSTS = {"127.0.0.1"}


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def _github_repo() -> tuple[str, str]:
    url = _config()["repository"]["url"].rstrip("/")
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?", url)
    if not match:
        raise AssertionError(f"expected repository.url in _config.yml to be https://github.com/ORG/REPO, got {url!r}")
    return match.group(1), match.group(2)


def _first_heading(notebook: Path) -> str:
    """The text of the first Markdown heading of a notebook, without its #s."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        for line in "".join(cell["source"]).splitlines():
            if line.startswith("#"):
                return line.lstrip("#").strip()
    raise AssertionError(f"{notebook.name}: expected a Markdown heading, found none")


def _solution_cell_count(notebook: Path) -> int:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return sum(1 for c in cells if c["cell_type"] == "code" and "### BEGIN SOLUTION" in "".join(c["source"]))


def _browser_path() -> str:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    raise AssertionError("Chromium not found: install it (`apt-get install -y chromium`) or set CHROMIUM=/path/to/chromium")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture(scope="module")
def site_url() -> Iterator[str]:
    """Serve _build/html on 127.0.0.1 at a free port; yield the base URL."""
    if not (SITE / "index.html").exists():
        message = f"{SITE.relative_to(ROOT)}/index.html is missing: run `make book` first"
        if _in_ci():
            pytest.fail(message + " (CI=true, so a missing build is an error)")
        pytest.skip(message)
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser(site_url: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=_browser_path(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Visit:
    """One page opened in the browser, with everything that went wrong on the way."""

    page: object
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = [f"blocked request to a non-local host: {url}" for url in dict.fromkeys(self.blocked)]
        out += [f"failed request: {item}" for item in self.failed]
        out += [f"page error: {text}" for text in self.page_errors]
        out += [f"console error: {text}" for text in self.console_errors
                if not any(allowed in text for allowed in ALLOWED_CONSOLE_ERRORS)]
        return out


@pytest.fixture
def visit(browser, site_url: str):
    """Open a page (path relative to the site root); block and record non-local requests."""
    contexts = []

    def open_page(path: str, viewport: dict[str, int] | None = None) -> Visit:
        context = browser.new_context(viewport=viewport) if viewport else browser.new_context()
        context.set_default_timeout(120_000)  # a loaded 2-core CI machine can take a while per page
        contexts.append(context)
        page = context.new_page()
        result = Visit(page)

        def route(route_obj) -> None:
            host = urlparse(route_obj.request.url).hostname
            if host in LOCAL_HOSTS:
                route_obj.continue_()
            else:
                result.blocked.append(route_obj.request.url)
                route_obj.abort()

        context.route("**/*", route)
        page.on("console", lambda msg: result.console_errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda err: result.page_errors.append(str(err)))
        page.on("requestfailed", lambda req: result.failed.append(f"{req.url} ({req.failure})")
                if urlparse(req.url).hostname in LOCAL_HOSTS else None)
        response = page.goto(f"{site_url}/{path}", wait_until="load")
        assert response is not None and response.ok, f"{path}: expected HTTP 200, got {response and response.status}"
        if page.evaluate("() => typeof window.MathJax === 'object' && !!window.MathJax.startup"):
            page.wait_for_function("() => window.MathJax.startup.promise !== undefined")
            page.evaluate("() => window.MathJax.startup.promise")
        page.wait_for_load_state("networkidle")
        return result

    yield open_page
    for context in contexts:
        context.close()


def test_notebooks_exist() -> None:
    assert NOTEBOOKS, "expected chapter notebooks in notebooks/, found none"


def test_index_redirects_to_intro(browser, site_url: str) -> None:
    page = browser.new_page()
    try:
        page.goto(f"{site_url}/index.html")
        page.wait_for_url(f"{site_url}/book/intro.html", timeout=10_000)
    finally:
        page.close()


@pytest.mark.parametrize("path", [f"{p}.html" for p in OTHER_PAGES])
def test_page_loads_cleanly(visit, path: str) -> None:
    result = visit(path)
    assert result.page.locator("h1").count() >= 1, f"{path}: expected a title (h1), found none"
    assert not result.problems(), f"{path}:\n  " + "\n  ".join(result.problems())


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_chapter_page(visit, notebook: Path) -> None:
    path = f"notebooks/{notebook.stem}.html"
    assert (SITE / path).exists(), f"{path} was not built: is {notebook.name} listed in _toc.yml?"
    result = visit(path)
    page = result.page
    main = page.locator("main#main-content article, article.bd-article").first
    problems: list[str] = []

    # Title: the page's h1 is the notebook's first Markdown heading.
    expected_title = _first_heading(notebook)
    # (MyST typesets a straight apostrophe as a typographic one: compare them as the same)
    expected_title = expected_title.replace("\u2019", "'")
    titles = [t.strip().rstrip("#").strip().replace("\u2019", "'") for t in main.locator("h1").all_inner_texts()]
    if expected_title not in titles:
        problems.append(f"title: expected an h1 {expected_title!r}, got {titles}")

    # Figures: at least one image, and every image in the content actually loaded.
    images = page.evaluate(
        """(root) => Array.from(root.querySelectorAll('img')).map(img => ({
               src: img.getAttribute('src'), ok: img.complete && img.naturalWidth > 0}))""",
        main.element_handle(),
    )
    if not images:
        problems.append("figures: expected at least one image (a plot) in the chapter, found none")
    problems += [f"figures: image did not load: {img['src']}" for img in images if not img["ok"]]

    # Math: MathJax typeset every formula and no TeX source is left in the prose.
    typeset = page.evaluate(
        """(root) => {
            const math = Array.from(root.querySelectorAll('.math'));
            const done = root.querySelectorAll('mjx-container').length;
            const raw = math.filter(el => !el.querySelector('mjx-container')).map(el => el.textContent.slice(0, 60));
            const clone = root.cloneNode(true);
            clone.querySelectorAll('pre, code, script, mjx-container, .cell_input, .cell_output, .highlight')
                 .forEach(el => el.remove());
            return {count: math.length, done: done, raw: raw, text: clone.textContent};
        }""",
        main.element_handle(),
    )
    if typeset["done"] == 0:
        problems.append("math: expected MathJax-rendered formulas (mjx-container), found none")
    problems += [f"math: formula not rendered: {text!r}" for text in typeset["raw"]]
    for marker in ("$$", "\\(", "\\[", "\\begin{"):
        if marker in typeset["text"]:
            at = typeset["text"].index(marker)
            problems.append(f"math: raw TeX {marker!r} left in the text: {typeset['text'][max(0, at - 30):at + 40]!r}")

    # Colab: the launch link opens this notebook from the repository in _config.yml.
    org, repo = _github_repo()
    branch = _config()["repository"].get("branch", "main")
    expected_colab = f"https://colab.research.google.com/github/{org}/{repo}/blob/{branch}/notebooks/{notebook.name}"
    hrefs = page.eval_on_selector_all("a[href*='colab.research.google.com']", "els => els.map(e => e.getAttribute('href'))")
    if expected_colab not in hrefs:
        problems.append(f"colab: expected a launch link {expected_colab}, got {hrefs or 'none'}")
    if not (ROOT / "notebooks" / notebook.name).exists():
        problems.append(f"colab: the link points at notebooks/{notebook.name}, which is not in the repository")

    # Solutions: every solution cell is collapsed behind a toggle, its code not shown.
    expected_solutions = _solution_cell_count(notebook)
    solutions = page.evaluate(
        """(root) => Array.from(root.querySelectorAll('.cell'))
            .filter(cell => (cell.querySelector('.cell_input') || {textContent: ''}).textContent.includes('### BEGIN SOLUTION'))
            .map(cell => {
                const input = cell.querySelector('.cell_input');
                const details = input.closest('details');
                const summary = details ? details.querySelector(':scope > summary') : null;
                return {
                    tagged: cell.classList.contains('tag_hide-input'),
                    collapsed: !!details && !details.open,
                    toggle: !!summary && summary.getBoundingClientRect().height > 0,
                    hidden: !input.checkVisibility(),
                };
            })""",
        main.element_handle(),
    )
    if len(solutions) != expected_solutions:
        problems.append(f"solutions: expected {expected_solutions} solution cells on the page, found {len(solutions)}")
    for i, cell in enumerate(solutions, start=1):
        if not (cell["tagged"] and cell["collapsed"] and cell["toggle"] and cell["hidden"]):
            problems.append(f"solutions: solution cell {i} is not collapsed behind a toggle: {cell}")

    problems += result.problems()
    assert not problems, f"{path}:\n  " + "\n  ".join(problems)


# Readable in the book's column: no code block or table wider than its container. The
# viewport is wide enough for the theme's text column to reach its full width (854 px,
# with a 786 px code block: an 88-character line of the 14 px code font fits, as the
# chapters' 88-character limit intends; tests/test_notebook_line_length.py checks that
# limit in the notebooks). Collapsed solution cells are opened first: readers open them.
READING_VIEWPORT = {"width": 1440, "height": 900}

# Every code block (cell inputs, text outputs, code in the prose) and every table of the
# chapter's content; for a table, the box it must fit is its parent's (the column, or the
# output area that would show a scroll bar). HTML outputs other than tables (chapter 8's
# interactive BertViz views) are not measured.
_OVERFLOW_JS = """(root) => {
    root.querySelectorAll('details').forEach(d => { d.open = true; });
    const cells = Array.from(root.querySelectorAll('.cell'));
    const where = (el) => {
        const cell = el.closest('.cell');
        if (!cell) return 'prose';
        const part = el.closest('.cell_output') ? 'output' : 'input';
        return `code cell ${cells.indexOf(cell) + 1} of ${cells.length}, ${part}`;
    };
    const firstLine = (el) => {
        const lines = (el.innerText || el.textContent || '').split('\\n').map(l => l.trim()).filter(l => l);
        return (lines[0] || '').slice(0, 80);
    };
    const found = [];
    const blocks = new Set(root.querySelectorAll('div.highlight pre, .cell_output pre'));
    for (const el of blocks) {
        if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
            found.push({kind: 'code block', where: where(el), width: el.scrollWidth, box: el.clientWidth,
                        first: firstLine(el)});
        }
    }
    for (const el of root.querySelectorAll('table')) {
        const box = el.parentElement;
        const width = Math.max(el.scrollWidth, Math.ceil(el.getBoundingClientRect().width));
        if (box.clientWidth > 0 && width > box.clientWidth + 1) {
            const header = Array.from(el.querySelectorAll('tr')).slice(0, 1)
                .map(tr => Array.from(tr.children).map(c => c.textContent.trim()).join(' | '))[0] || '';
            found.push({kind: 'table', where: where(el), width: width, box: box.clientWidth,
                        first: header.slice(0, 80)});
        }
    }
    return found;
}"""


def overflowing(page) -> list[str]:
    """Every code block and table in the page's content that is wider than its container."""
    page.evaluate("() => document.fonts.ready")
    main = page.locator("main#main-content article, article.bd-article").first
    found = page.evaluate(_OVERFLOW_JS, main.element_handle())
    return [f"{item['kind']} ({item['where']}) is {item['width']} px wide in a {item['box']} px container; "
            f"first line: {item['first']!r}" for item in found]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_chapter_code_and_tables_fit_the_column(visit, notebook: Path) -> None:
    path = f"notebooks/{notebook.stem}.html"
    assert (SITE / path).exists(), f"{path} was not built: is {notebook.name} listed in _toc.yml?"
    result = visit(path, viewport=READING_VIEWPORT)
    problems = overflowing(result.page)
    assert not problems, (f"{path}: {len(problems)} element(s) wider than their container at a "
                          f"{READING_VIEWPORT['width']} px wide window (wrap code at 88 characters; "
                          f"transpose or split wide tables):\n  " + "\n  ".join(problems))


def test_overflow_check_finds_a_wide_code_line_and_a_wide_table(visit) -> None:
    """The check can fail: cells with an 89- and an 88-character line, and a wide table."""
    result = visit("book/glossary.html", viewport=READING_VIEWPORT)
    page = result.page
    page.evaluate("""() => {
        const article = document.querySelector('main#main-content article, article.bd-article');
        const cell = (line) => {
            const div = document.createElement('div');
            div.className = 'cell docutils container';
            div.innerHTML = '<div class="cell_input docutils container"><div class="highlight-python notranslate">'
                + '<div class="highlight"><pre></pre></div></div></div>';
            div.querySelector('pre').textContent = 'short line\\n' + line;
            return div;
        };
        const table = document.createElement('table');
        table.innerHTML = '<tr>' + Array.from({length: 40}, (_, i) => `<th>column_${i}</th>`).join('') + '</tr>';
        article.append(cell('y = ' + '2'.repeat(84)), cell('x = ' + '1'.repeat(120)), table);
    }""")
    problems = overflowing(page)
    assert len(problems) == 2, f"expected the 124-character line and the wide table, got {problems}"
    assert problems[0].startswith("code block (code cell 2 of 2, input)"), problems[0]
    assert "first line: 'short line'" in problems[0], problems[0]
    assert problems[1].startswith("table (prose)") and "column_0 | column_1" in problems[1], problems[1]


def test_student_versions_are_published(visit, site_url: str) -> None:
    """The instructors page links the student notebooks, and the zip holds every chapter without solutions."""
    import io
    import urllib.request
    import zipfile

    result = visit("book/instructors.html")
    link = result.page.locator("a[href$='attention-book-student.zip']")
    assert link.count() >= 1, "book/instructors.html: expected a link to attention-book-student.zip"
    href = link.first.get_attribute("href")
    url = f"{site_url}/book/{href}"
    with urllib.request.urlopen(url, timeout=30) as response:  # 127.0.0.1 only
        archive = zipfile.ZipFile(io.BytesIO(response.read()))
    names = sorted(archive.namelist())
    assert names == sorted(f"student/{p.name}" for p in NOTEBOOKS), f"{url}: expected every chapter, got {names}"
    for name in names:
        text = archive.read(name).decode("utf-8")
        assert "### BEGIN SOLUTION" not in text and "raise NotImplementedError()" in text, \
            f"{name}: expected a student version (stubs, no solutions)"


# Chapter 8 draws BertViz views with require.js, d3 and jQuery served by the site itself
# (src/attnbook/viz/bertviz.py; with the libraries inlined instead, the same checks hold).
BERTVIZ_VIEWS = {"bertviz-ch08-head": "head view", "bertviz-ch08-model": "model view"}


def test_chapter_8_bertviz_views_draw_offline(visit) -> None:
    path = "notebooks/08_inside_pretrained.html"
    if not (SITE / path).exists():
        pytest.fail(f"{path} was not built: is notebooks/08_inside_pretrained.ipynb listed in _toc.yml?")
    result = visit(path)  # every non-local request is blocked and reported
    page = result.page
    problems: list[str] = []
    for view_id, label in BERTVIZ_VIEWS.items():
        try:  # the views draw after the page's load event, when require.js has loaded d3 and jQuery
            page.wait_for_function(f"() => document.querySelectorAll('#{view_id} svg text').length > 0",
                                   timeout=15_000)
        except Exception:  # noqa: BLE001 - reported below with what was found
            pass
        drawn = page.evaluate(
            """(id) => { const root = document.getElementById(id);
                return root ? {svg: root.querySelectorAll('svg').length, text: root.querySelectorAll('svg text').length,
                               marks: root.querySelectorAll('svg line, svg path, svg rect').length} : null; }""",
            view_id)
        if drawn is None:
            problems.append(f"{label}: expected an element #{view_id}, found none")
        elif not (drawn["svg"] >= 1 and drawn["text"] >= 5 and drawn["marks"] >= 20):
            problems.append(f"{label}: expected an SVG with token labels and attention lines, got {drawn}")
    # the still fallback for readers without JavaScript: a PNG inside <noscript>
    fallbacks = page.evaluate("() => Array.from(document.querySelectorAll('.attnbook-bertviz noscript'))"
                              ".filter(n => n.textContent.includes('data:image/png;base64,')).length")
    if fallbacks != len(BERTVIZ_VIEWS):
        problems.append(f"expected a PNG fallback in <noscript> for each of the {len(BERTVIZ_VIEWS)} views, found {fallbacks}")
    problems += result.problems()
    assert not problems, f"{path}:\n  " + "\n  ".join(problems)
