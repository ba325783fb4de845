"""Feedback in Chinese: the same tests and points in every language, hidden cases echo nothing in any,
every message has a translation with the same fields, and an unknown language is refused."""
from __future__ import annotations

import ast
import collections
import json
import os
import re
import shutil
import string
import sys
import unicodedata

import numpy as np
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grading"))
from submissions import FIXTURE_COURSE, submission  # noqa: E402

from autograder import messages  # noqa: E402
from autograder.__main__ import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCE = FIXTURE_COURSE / "solutions" / "tiny" / "tiny.ipynb"
ASSIGNMENTS = ("optimizers", "classification", "backprop")
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")

# `scale` adds k (the fixture's known mistake), `total` is right
WRONG_SCALE = submission(SOURCE, reference=True, solutions={"scale": "def scale(x, k):\n    return np.asarray(x) + k\n"})
# what a hidden case's verdict must not echo: a shape the submission chose
SHAPE_ORACLE = submission(SOURCE, solutions={"scale": "def scale(x, k):\n    return np.empty((0, 4242, 5353))\n",
                                             "total": "def total(x):\n    return [1, 2, 3]\n"})
MISTAKE_EN = "added k instead of multiplying"
MISTAKE_ZH = "把 k 加到了 x 上，而不是乘以 k"
TINY_PO = f'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n"Language: zh_CN\\n"\n\n' \
          f'msgid "{MISTAKE_EN}"\nmsgstr "{MISTAKE_ZH}"\n'


@pytest.fixture
def course(tmp_path):
    """The fixture course, its mistake translated beside its cases, Chinese in nbgrader_config.py."""
    course = tmp_path / "course"
    shutil.copytree(FIXTURE_COURSE, course)
    (course / "solutions" / "tiny" / "locale").mkdir()
    (course / "solutions" / "tiny" / "locale" / "zh_CN.po").write_text(TINY_PO, encoding="utf-8")
    (course / "nbgrader_config.py").write_text('c = get_config()  # noqa: F821\nc.Autograder.language = "zh_CN"\n')
    return course


def expected_points(failing: str) -> dict[str, float]:
    """Points per test cell, read from the source notebook itself: 0 where a cell checks `failing`."""
    nb = json.loads(SOURCE.read_text(encoding="utf-8"))
    out = {}
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and meta.get("grade") and not meta.get("solution"):
            checked = re.findall(r'check\("([^"]+)"\)', source)
            out[meta["grade_id"]] = 0.0 if any(c.startswith(failing) for c in checked) else float(meta["points"])
    return out


def results(out: Path, student: str) -> dict:
    return json.loads((out / "students" / student / "results.json").read_text(encoding="utf-8"))


def feedback(out: Path, student: str) -> str:
    return (out / "students" / student / "feedback.html").read_text(encoding="utf-8")


def messages_of(result: dict) -> dict[str, str]:
    return {c["case"]: c["message"] for t in result["tests"] for c in t["cases"] if not c["passed"]}


# --------------------------------------------------------------------------- grading in Chinese
@root_only
def test_chinese_feedback_has_the_same_points_and_says_the_mistake_in_chinese(course, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "ann.ipynb").write_bytes(WRONG_SCALE)
    common = ["grade", "tiny", str(inbox), "--root", str(course), "--workers", "1", "--seed", "7"]
    assert main(common + ["--out", str(tmp_path / "zh"), "--no-gradebook"]) == 0  # the course's language
    assert main(common + ["--out", str(tmp_path / "en"), "--language", "en"]) == 0  # overridden
    zh, en = results(tmp_path / "zh", "ann"), results(tmp_path / "en", "ann")

    want = expected_points(failing="scale")
    assert want == {"test_scale": 0.0, "test_total": 1.0}
    for result in (zh, en):
        assert {t["grade_id"]: t["points"] for t in result["tests"]} == want
    assert [(c["case"], c["passed"]) for t in zh["tests"] for c in t["cases"]] == \
        [(c["case"], c["passed"]) for t in en["tests"] for c in t["cases"]]
    assert (zh["score"], zh["language"], en["language"]) == (en["score"], "zh_CN", "en")

    hidden_zh, hidden_en = messages_of(zh)["scale-hidden-2d"], messages_of(en)["scale-hidden-2d"]
    assert hidden_en == f"Likely mistake: {MISTAKE_EN}"
    assert hidden_zh == f"可能的错误：{MISTAKE_ZH}"
    visible = messages_of(zh)["scale-visible"]  # a visible case says why, in Chinese too
    assert visible.startswith(f"可能的错误：{MISTAKE_ZH}（数值不一致：最大相对误差 ") and "rtol=1e-05" in visible

    page = feedback(tmp_path / "zh", "ann")
    assert '<html lang="zh-CN">' in page
    for label in ("<th>测试</th>", "<th>分数</th>", "<th>结果</th>", "得分：", "总分：", "通过", "反馈：tiny"):
        assert label in page, label
    assert f"可能的错误：{MISTAKE_ZH}" in page
    assert not re.search(r"Likely mistake|Score:|Total:|<th>Test</th>|>passed<", page)
    english = feedback(tmp_path / "en", "ann")
    assert f"Likely mistake: {MISTAKE_EN}" in english and "<th>Points</th>" in english and "可能" not in english

    # export --language writes the feedback again from each message's template and fields
    assert main(["export", "tiny", "--out", str(tmp_path / "en"), "--root", str(course), "--language", "zh_CN"]) == 0
    again = feedback(tmp_path / "en", "ann")
    assert f"可能的错误：{MISTAKE_ZH}" in again and "<th>分数</th>" in again and "Likely mistake" not in again
    assert messages_of(results(tmp_path / "en", "ann"))["scale-hidden-2d"] == hidden_en  # the record stays


@root_only
def test_a_hidden_cases_chinese_message_echoes_nothing_the_submission_returned(course, tmp_path):
    (tmp_path / "bob.ipynb").write_bytes(SHAPE_ORACLE)
    out = tmp_path / "out"
    assert main(["grade", "tiny", str(tmp_path / "bob.ipynb"), "--out", str(out), "--root", str(course),
                 "--workers", "1", "--no-gradebook"]) == 0
    failures = messages_of(results(out, "bob"))
    assert "4242" in failures["scale-visible"] and "形状应为" in failures["scale-visible"]  # visible: all of it
    hidden = {case: m for case, m in failures.items() if "hidden" in case}
    assert set(hidden) == {"scale-hidden-2d", "scale-hidden-f32", "total-hidden"}
    assert not any("4242" in m or "5353" in m or "相对误差" in m or "relative error" in m for m in hidden.values())
    assert hidden["scale-hidden-2d"] == "返回的数组形状错误"
    page = feedback(out, "bob")
    assert "4242" not in page.split("scale-visible")[0] and "返回的数组形状错误" in page
    for case, data in ((c["case"], c.get("message_data")) for t in results(out, "bob")["tests"] for c in t["cases"]):
        if "hidden" in case:  # nor does what the feedback could be written again from
            assert "4242" not in json.dumps(data) and "5353" not in json.dumps(data)


def test_an_assignments_known_mistake_is_named_in_chinese_with_or_without_values():
    """optimizers' AdamW without bias correction, judged as a hidden and as a visible case."""
    import numpy as np
    from autograder.case import case_seed, load_cases
    from autograder.judges import hidden_case
    case = load_cases("optimizers", ROOT)[0]["adamw.visible"]
    inputs, expected = case.draw(np.random.default_rng(case_seed("adamw.visible")))
    wrong = case.judge.mistakes(inputs)["no bias correction (divide m by 1−β₁ᵗ and v by 1−β₂ᵗ)"]
    outputs = {"result": wrong, "error": None}
    with messages.using("zh_CN", ROOT / "solutions" / "optimizers"):
        with hidden_case():
            hidden = case.judge(inputs, outputs, expected)
        shown = case.judge(inputs, outputs, expected)
    assert hidden == "可能的错误：没有偏差修正（应将 m 除以 1−β₁ᵗ，v 除以 1−β₂ᵗ）"
    assert shown.startswith(hidden + "（") and "最大相对误差" in shown
    assert case.judge(inputs, outputs, expected).startswith("Likely mistake: no bias correction")  # English outside
    assert messages.render(hidden.as_data(), "en") == "Likely mistake: no bias correction (divide m by 1−β₁ᵗ and v by 1−β₂ᵗ)"


# --------------------------------------------------------------------------- the catalogs
def test_every_message_has_a_chinese_translation():
    """Counted from the code (every Msg template) and from the cases (every mistake of every Close
    judge of the three assignments), not from a list kept by hand."""
    templates = messages.templates()
    assert len(templates) > 80 and {"Likely mistake: {mistake}", "passed", "Total: {points}"} <= set(templates)
    for name in ASSIGNMENTS:
        assert len(messages.mistakes(ROOT / "solutions" / name)) >= 10, name
    missing = messages.untranslated("zh_CN", ROOT)
    assert [f"{path.relative_to(ROOT)}: {m}" for path, m in missing] == []


def test_judges_say_everything_through_message_templates():
    """No judge or scoring message bypasses the catalog: no str literal or f-string is returned,
    passed to _say or raised as a ValueError's message in judges.py, and scoring's verdicts are Msg."""
    for module in ("judges.py", "scoring.py"):
        tree = ast.parse((ROOT / "autograder" / module).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            values = []
            if isinstance(node, ast.Return) and node.value is not None:
                values = [node.value] + ([*node.value.elts] if isinstance(node.value, ast.Tuple) else [])
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("_say", "fail_rest", "problem"):
                values = list(node.args)
            elif module == "judges.py" and isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                values = list(node.exc.args)
            for value in values:
                text = isinstance(value, ast.JoinedStr) or isinstance(value, ast.Constant) and isinstance(value.value, str) \
                    and value.value != "" and module == "judges.py"
                assert not text, f"{module}:{value.lineno}: a message that is not a Msg template"


def catalogs() -> dict[str, dict[str, str]]:
    found = {"autograder": messages.read_catalog(messages.catalog_path("zh_CN"))}
    for name in ASSIGNMENTS:
        found[name] = messages.read_catalog(messages.assignment_catalog(ROOT / "solutions" / name, "zh_CN"))
    return found


def names(template: str) -> collections.Counter:
    return collections.Counter(f for _, f, _, _ in string.Formatter().parse(template) if f is not None)


def test_translations_keep_the_fields_the_formulas_and_the_code_names():
    math = lambda s: collections.Counter(c for c in s if unicodedata.category(c) in ("Sm", "No")  # noqa: E731
                                         or "\u0370" <= c <= "\u03ff" or c in "ᵗᵀ√‖∂−·←̂")
    code = lambda s: set(re.findall(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|\b\w*_\w*\b|`[^`]+`|\b[A-Za-z]\w*\(", s))  # noqa: E731
    checked = 0
    for where, table in catalogs().items():
        assert table, where
        for source, translated in table.items():
            assert names(translated) == names(source), f"{where}: {source!r}"
            assert math(translated) == math(source), f"{where}: {source!r}"
            assert code(source) <= code(translated), f"{where}: {source!r}: {code(source) - code(translated)}"
            assert re.search(r"[\u4e00-\u9fff]", translated) or not re.search(r"[a-z]{3}", re.sub(r"\{\w+\}", "", source)), \
                f"{where}: {source!r} is not translated"
            checked += 1
    assert checked > 130


def test_translations_use_the_course_glossary():
    """Every glossary term (book/_glossary: `english (中文)`) in an English message is its Chinese term
    in the translation; names kept as names in the book's Chinese edition (Adam, the layer kinds
    ReLU and Sigmoid) stay as they are. Never 批量 or 局部极小值."""
    glossary = {}
    for path in (ROOT / "book" / "_glossary").glob("*.md"):
        for line in path.read_text(encoding="utf-8").splitlines():
            m = re.fullmatch(r"(\S[^()]*?) \(([^()]+)\)", line.strip())
            if m:
                glossary[m.group(1)] = m.group(2)
    assert {"batch", "learning rate", "weight decay", "bias correction"} <= set(glossary)
    names_kept = {"Adam", "ReLU", "sigmoid"}
    used = set()
    for where, table in catalogs().items():
        for source, translated in table.items():
            assert "批量" not in translated and "局部极小值" not in translated, translated
            for english, chinese in glossary.items():
                if english in names_kept:
                    continue
                if re.search(r"(?<![\w.(])" + re.escape(english) + r"(?:e?s)?(?![\w(.=])", source, re.I):
                    assert chinese in translated, f"{where}: {source!r} needs {chinese} ({english})"
                    used.add(english)
    assert {"batch", "weight decay", "bias correction", "learning rate", "gradient", "logit"} <= used


# --------------------------------------------------------------------------- falling back, refusing
def test_a_message_without_a_usable_translation_is_english(tmp_path):
    folder = tmp_path / "a"
    (folder / "locale").mkdir(parents=True)
    (folder / "locale" / "zh_CN.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
        'msgid "broken {x}"\nmsgstr "坏了 {y}"\n\nmsgid "fine {x}"\nmsgstr "好 {x}"\n', encoding="utf-8")
    with messages.using("zh_CN", folder):
        assert messages.Msg("no catalog has this {x}", x=1) == "no catalog has this 1"
        assert messages.Msg("broken {x}", x=1) == "broken 1"  # a translation with other fields
        assert messages.Msg("fine {x}", x=1) == "好 1"
        assert messages.Msg("a {plain} sentence, never formatted") == "a {plain} sentence, never formatted"
    assert messages.Msg("fine {x}", x=1) == "fine 1"  # English outside


def test_an_unknown_language_is_refused_with_a_clear_message(course, tmp_path, capsys):
    (tmp_path / "ann.ipynb").write_bytes(WRONG_SCALE)
    out = tmp_path / "out"
    assert main(["grade", "tiny", str(tmp_path / "ann.ipynb"), "--root", str(course), "--out", str(out),
                 "--language", "fr"]) == 2
    err = capsys.readouterr().err
    assert "unknown feedback language 'fr'" in err and "en, zh_CN" in err and not out.exists()
    assert main(["export", "tiny", "--root", str(course), "--out", str(out), "--language", "klingon"]) == 2
    assert "unknown feedback language 'klingon'" in capsys.readouterr().err

    (course / "nbgrader_config.py").write_text('c = get_config()  # noqa: F821\nc.Autograder.language = "de"\n')
    assert main(["grade", "tiny", str(tmp_path / "ann.ipynb"), "--root", str(course), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nbgrader_config.py (c.Autograder.language)" in err and "unknown feedback language 'de'" in err

    from autograder.service import config as service_config
    (course / "service.toml").write_text('[service]\nlanguage = "xx"\n')
    with pytest.raises(service_config.ConfigError, match=r"\[service\] language: unknown feedback language 'xx'"):
        service_config.load(course, state=tmp_path / "state")
    assert main(["serve", "--course", str(course), "--language", "fr"]) == 2
    assert "unknown feedback language 'fr'" in capsys.readouterr().err


def test_the_service_reads_the_language_the_same_way(course, tmp_path):
    from autograder.service import config as service_config
    assert service_config.load(course, state=tmp_path / "s").language == "zh_CN"  # nbgrader_config.py
    (course / "service.toml").write_text('[service]\nlanguage = "en"\n')
    assert service_config.load(course, state=tmp_path / "s").language == "en"  # service.toml wins
    assert service_config.load(course, state=tmp_path / "s", language="zh-CN").language == "zh_CN"  # --language
    (course / "nbgrader_config.py").unlink()
    (course / "service.toml").unlink()
    assert service_config.load(course, state=tmp_path / "s").language == "en"  # the default


# --------------------------------------------------------------------------- attacks that broke it
@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_a_hidden_case_echoes_no_field_the_submission_or_the_case_chose(language):
    """Attack: a function returned the error marker {"__error__": <80 chars of its hidden inputs>}
    as a value, and "got an error {error}" echoed them; other messages echoed a hidden length, a
    hidden flag or the index of the first wrong item. Under hidden_case every field that is not an
    instructor's constant turns the message into the generic one, in every language."""
    from autograder.judges import Close, hidden_case
    secret = "max_norm=0.6981 shapes=[(4, 3)] SECRET"
    exp = {"result": [np.ones(3), np.ones(2)], "error": None}
    attacks = [{"__error__": secret, "message": ""},                          # the marker as a value
               [np.ones(3), {"__error__": secret, "message": ""}],             # ... nested
               [np.ones(3)],                                                   # a length: hidden
               [np.ones(3), np.ones(2) * 7]]                                   # index of the wrong item
    judge = Close(rtol=1e-6, atol=1e-9)
    with messages.using(language):
        for result in attacks:
            with hidden_case():
                said = judge({}, {"result": result, "error": None}, exp)
            shown = judge({}, {"result": result, "error": None}, exp)
            assert said and shown, result                       # wrong either way
            assert secret not in said and secret not in json.dumps(said.as_data())
            assert "[1]" not in said and "2" not in said.replace("1e-06", "").replace("1e-09", ""), said
    with messages.using("en"), hidden_case():                   # and the same rule, made directly
        assert messages.Msg("expected {count} items", count=3) == messages.HIDDEN_GENERIC
        assert messages.Msg("tolerance rtol={rtol}", rtol="1e-06") == "tolerance rtol=1e-06"


def test_a_broken_catalog_costs_its_translations_not_a_grade(tmp_path):
    """Attack: a catalog babel cannot read (charset=CHARSET, as a fresh .pot has it; not UTF-8; a
    folder) made every message raise, and every student got a grader error. It is read as empty,
    with a warning, and its messages are shown in English; a translation that format cannot read
    falls back to English too."""
    folder = tmp_path / "assignment"
    po = messages.assignment_catalog(folder, "zh_CN")
    po.parent.mkdir(parents=True)
    for broken in (b'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=CHARSET\\n"\n\n'
                   b'msgid "off by one"\nmsgstr "x"\n', b"\xff\xfe\x00garbage", None):
        if po.is_dir():
            po.rmdir()
        if broken is None:
            po.unlink(missing_ok=True)
            po.mkdir()
        else:
            po.write_bytes(broken)
        with messages.using("zh_CN", folder), pytest.warns(UserWarning, match="cannot read this catalog"):
            assert messages.Msg("Likely mistake: {mistake}", mistake=messages.Msg("off by one")) \
                == "可能的错误：off by one"
    po.rmdir()
    po.write_text('msgid "expected {count} items"\nmsgstr "应有 {count[x]} 项"\n', encoding="utf-8")
    with messages.using("zh_CN", folder):                      # format raises TypeError on this one
        assert messages.Msg("expected {count} items", count="3") == "expected 3 items"


@root_only
@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_feedback_reads_on_a_phone_and_a_desktop(browser, screenshot_dir, tmp_path, language):
    """The unsolved optimizers notebook graded: its feedback page (every test failing, long case
    names and messages) in Chromium at 390 and 1280 px: no sideways scrolling, the points never
    broken over lines; the Chinese one in Chinese. Screenshots: _build/screenshots/feedback-*.png."""
    out = tmp_path / "out"
    assert main(["grade", "optimizers", str(ROOT / "assignments" / "optimizers" / "optimizers.ipynb"),
                 "--out", str(out), "--root", str(ROOT), "--language", language, "--no-gradebook"]) == 0
    page = out / "students" / "optimizers" / "feedback.html"
    for width in (390, 1280):
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 1000})
        try:
            browser.get(page.as_uri())
            state = browser.execute_script("""
                const points = [...document.querySelectorAll('td:nth-child(2)')];
                const lines = (td) => { const r = document.createRange(); r.selectNodeContents(td);
                  return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size; };
                return {scroll: document.documentElement.scrollWidth,
                        width: document.documentElement.clientWidth,       // the layout viewport
                        wrapped: points.filter(td => lines(td) > 1).length,
                        rows: points.length, text: document.body.innerText.slice(0, 400)};""")
            browser.save_screenshot(str(screenshot_dir / f"feedback-{language}-{width}.png"))
        finally:
            browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        assert state["scroll"] <= state["width"], state
        assert state["rows"] >= 10 and state["wrapped"] == 0, state
        assert ("总分" in state["text"]) == (language == "zh_CN"), state["text"]


def test_hidden_rule_covers_the_accuracy_and_a_judge_that_trips():
    """Attack, round 2: a returned model chose its accuracy on the public digits to encode a hidden
    seed (about 9 bits a run), and a judge tripping on odd data named the exception it raised,
    outside the hidden context. Neither is shown for a hidden case now; both still are for a visible one."""
    from autograder.case import Case
    from autograder.judges import Accuracy, hidden_case
    from autograder.scoring import judge
    X, y = np.eye(4), np.array([0, 1, 2, 3])
    weak = {"result": [np.zeros((4, 4)), np.array([5.0, 0, 0, 0])], "error": None}   # always class 0: 0.25
    accuracy = Accuracy(threshold=0.9, model="linear", test_data=lambda inp: (X, y))
    with hidden_case():
        assert accuracy({}, weak, None) == "test accuracy is below the required 0.90"
    assert accuracy({}, weak, None) == "test accuracy 0.250 is below the required 0.90"

    def trips(inputs, outputs, expected):
        return outputs["result"]["missing"]               # KeyError, TypeError ...: the submission's pick
    for visible in (False, True):
        case = Case("fn", lambda rng: {}, lambda inputs: None, trips, visible=visible)
        said = judge(case, {}, {"result": [], "error": None}, None)
        assert ("TypeError" in said) == visible, said


def test_a_catalog_is_read_only_when_it_is_a_bounded_file_and_its_fields_are_plain(tmp_path):
    """Attack, round 2: a catalog that is a FIFO hung the grader, one linked to /dev/zero filled
    memory, a translation "{error:>1000000000}" made a 1 GB message and "{x.__class__}" reached a
    field's attributes. Each is shown in English now, at once."""
    import time
    folder = tmp_path / "assignment"
    po = messages.assignment_catalog(folder, "zh_CN")
    po.parent.mkdir(parents=True)
    os.mkfifo(po)
    start = time.monotonic()
    with messages.using("zh_CN", folder), pytest.warns(UserWarning, match="cannot read this catalog"):
        assert messages.Msg("off by one") == "off by one"
    po.unlink()
    po.symlink_to("/dev/zero")
    with messages.using("zh_CN", folder), pytest.warns(UserWarning, match="cannot read this catalog"):
        assert messages.Msg("off by two") == "off by two"
    assert time.monotonic() - start < 10
    po.unlink()
    po.write_text('msgid "raised {error}"\nmsgstr "抛出了 {error:>1000000000}"\n\n'
                  'msgid "expected {count} items"\nmsgstr "{count.__class__.__mro__}"\n\n'
                  'msgid "got {got}"\nmsgstr "得到 {got}"\n', encoding="utf-8")
    with messages.using("zh_CN", folder):
        assert messages.Msg("raised {error}", error="KeyError") == "raised KeyError"
        assert messages.Msg("expected {count} items", count="3") == "expected 3 items"
        assert messages.Msg("got {got}", got="3") == "得到 3"       # a plain translation is used
