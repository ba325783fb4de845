"""The student notebooks in Chinese (autograder/notebook_i18n.py, locales/zh_CN/LC_MESSAGES/assignments/):
every instruction translated, and nothing else changed — the same cells, tests, points and nbgrader
checksums — so a Chinese notebook is graded exactly as the English one."""
import collections
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from markdown_it import MarkdownIt
from nbgrader.utils import compute_checksum

from autograder import notebook_i18n as ni

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
ASSIGNMENTS = ["optimizers", "classification", "backprop"]
LANGUAGE = "zh_CN"
CJK = re.compile(r"[\u4e00-\u9fff]")
MATH = re.compile(r"\$\$.+?\$\$|\$[^$\n]+\$", re.S)
CODE = re.compile(r"``.+?``|`[^`\n]+`")
WORD = re.compile(r"[A-Za-z]{3,}")
CHAPTER = re.compile(r"[Cc]hapter \*[^*]+\*")


def english(assignment):
    return nbformat.read(ni.student_notebook(assignment), as_version=4)


def chinese(assignment):
    return ni.translate(english(assignment), ni.load_catalog(assignment, LANGUAGE))


def spans(text):
    """Math and inline code of a markdown text, with multiplicity (code inside math is math)."""
    math = MATH.findall(text)
    return collections.Counter(math + CODE.findall(MATH.sub(" ", text)))


def blocks(text):
    """A markdown text's structure: its block tokens (headings with their level, lists, items,
    paragraphs) and the inline emphasis, strong and code it renders."""
    out = []
    for token in MarkdownIt("commonmark").parse(text):
        if token.type == "inline":
            out += [t.type for t in token.children if t.type in ("em_open", "strong_open", "code_inline")]
        elif token.nesting >= 0:
            out.append(f"{token.type}:{token.tag}")
    return out


def translatable(cell):
    return cell.cell_type == "markdown" and "nbgrader" not in cell.metadata


# ---------------------------------------------------------------------------- the catalogs
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_message_of_the_current_notebook_is_translated(assignment):
    """Computed from the student notebook as it is now: a changed English cell fails until translated."""
    left = ni.untranslated(assignment, LANGUAGE)
    assert len(ni.messages(english(assignment))) >= 5
    assert left == [], (f"{len(left)} untranslated cell(s) in {assignment}, first: {left[0][:80]!r}; run "
                        f"`python -m autograder.notebook_i18n update {assignment}` and translate them")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_catalog_is_what_update_writes(assignment, tmp_path):
    """The committed .po is in step with the notebook: `update` rewrites it byte for byte."""
    course = _course(tmp_path, [assignment])
    ni.update_catalog(assignment, LANGUAGE, course)
    assert ni.catalog_path(assignment, LANGUAGE, course).read_bytes() == \
        ni.catalog_path(assignment, LANGUAGE).read_bytes(), f"run `python -m autograder.notebook_i18n update {assignment}`"


def test_no_variant_names_of_glossary_terms():
    """The course's names (批次, 局部最小值), never the LeeDL variants (批量, 局部极小值)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from i18n import terms
        variants = {v: t for t in terms() for v in t.variants}
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    variants.setdefault("批量", None)
    variants.setdefault("局部极小值", None)
    found = [(a, v) for a in ASSIGNMENTS for zh in ni.load_catalog(a, LANGUAGE).values()
             for v in variants if v in zh]
    assert found == []


# ---------------------------------------------------------------------------- the translated notebooks
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_translated_notebook_has_the_same_cells(assignment):
    en, zh = english(assignment), chinese(assignment)
    assert zh.metadata == en.metadata and (zh.nbformat, zh.nbformat_minor) == (en.nbformat, en.nbformat_minor)
    assert [(c.id, c.cell_type) for c in zh.cells] == [(c.id, c.cell_type) for c in en.cells]
    translated = 0
    for a, b in zip(en.cells, zh.cells):
        assert b.metadata == a.metadata, a.id
        if not translatable(a):             # code cells, nbgrader cells (answers too): untouched
            assert b == a, a.id
            continue
        translated += 1
        # Chinese prose, not English with its Chinese glosses: at least a character per English word
        words = len(WORD.findall(CODE.sub(" ", MATH.sub(" ", a.source))))
        assert len(CJK.findall(b.source)) >= words, f"{a.id}: hardly any Chinese in {b.source[:80]!r}"
        missing = spans(a.source) - spans(b.source)
        assert not missing, f"{a.id}: math or code of the English not in the translation: {list(missing)[:3]}"
        # the same structure; a chapter's title, in italics in English, is in 《》 in Chinese
        titles = len(CHAPTER.findall(a.source))
        assert b.source.count("《") >= titles, f"{a.id}: {titles} chapter title(s) in 《》 expected"
        assert blocks(b.source) == blocks(CHAPTER.sub("chapter", a.source)), \
            f"{a.id}: the markdown structure differs"
    assert translated == len(ni.messages(en))
    assert english(assignment) == en                    # translate() never changes its argument


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_nbgrader_sees_the_same_tests_and_points(assignment):
    """nbgrader's own checksum of every nbgrader cell still matches, and the grade cells and their
    points are those of the English notebook."""
    en, zh = english(assignment), chinese(assignment)
    graded = [c for c in zh.cells if "nbgrader" in c.metadata]
    assert sum(1 for c in graded if c.metadata.nbgrader.get("grade")) >= 5
    for cell in graded:
        if "checksum" in cell.metadata.nbgrader:
            assert compute_checksum(cell) == cell.metadata.nbgrader.checksum, cell.metadata.nbgrader.grade_id

    def points(nb):
        return [(c.metadata.nbgrader.grade_id, c.metadata.nbgrader.get("points"))
                for c in nb.cells if "nbgrader" in c.metadata]
    assert points(zh) == points(en)


def test_translating_twice_is_translating_once():
    catalog = ni.load_catalog("backprop", LANGUAGE)
    once = ni.translate(english("backprop"), catalog)
    assert ni.translate(once, catalog) == once


def test_a_cell_without_translation_raises_naming_assignment_and_cell():
    nb = english("classification")
    cell = next(c for c in nb.cells if translatable(c) and c.source.startswith("## 2."))
    cell.source = cell.source.replace("Over the last axis", "Along the last axis")
    with pytest.raises(ni.MissingTranslation, match=r"classification: .*'## 2\. Softmax and log-softmax'"):
        ni.translate(nb, ni.load_catalog("classification", LANGUAGE))


# ---------------------------------------------------------------------------- command line, catalogs
def _course(tmp_path, assignments=ASSIGNMENTS, locales=True):
    """A course folder with the student notebooks (and the zh_CN catalogs)."""
    for a in assignments:
        shutil.copytree(ROOT / "assignments" / a, tmp_path / "assignments" / a)
        if locales:
            po = ni.catalog_path(a, LANGUAGE, tmp_path)
            po.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ni.catalog_path(a, LANGUAGE), po)
    return tmp_path


def cli(*args, cwd):
    return subprocess.run([PYTHON, "-m", "autograder.notebook_i18n", *args], cwd=cwd,
                          capture_output=True, text=True)


def test_cli_translates_in_place_and_to_another_file(tmp_path):
    course = _course(tmp_path, ["optimizers"])
    notebook = course / "assignments" / "optimizers" / "optimizers.ipynb"
    proc = cli("translate", str(notebook), "--language", LANGUAGE, "-o", str(tmp_path / "out.ipynb"), cwd=course)
    assert proc.returncode == 0, proc.stderr
    assert notebook.read_bytes() == ni.student_notebook("optimizers").read_bytes()
    expected = nbformat.writes(chinese("optimizers")) + "\n"   # as nbgrader writes a notebook
    assert (tmp_path / "out.ipynb").read_text(encoding="utf-8") == expected
    proc = cli("translate", "assignments/optimizers/optimizers.ipynb", "--language", LANGUAGE, cwd=course)
    assert proc.returncode == 0, proc.stderr
    assert notebook.read_text(encoding="utf-8") == expected
    assert cli("translate", str(notebook), "--language", LANGUAGE, cwd=course).returncode == 0   # again: same
    assert notebook.read_text(encoding="utf-8") == expected


def test_cli_untranslated_cell_exits_2_and_writes_nothing(tmp_path):
    course = _course(tmp_path, ["backprop"])
    notebook = course / "assignments" / "backprop" / "backprop.ipynb"
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if c["cell_type"] == "markdown" and "".join(c["source"]).startswith("## 4."))
    cell["source"] = ["## 4. The network, revised\n", "\n", "Chains layers."]
    notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    before = notebook.read_bytes()
    for extra in ([], ["-o", str(tmp_path / "out.ipynb")]):
        proc = cli("translate", str(notebook), "--language", LANGUAGE, *extra, cwd=course)
        assert proc.returncode == 2, proc
        assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "backprop" in proc.stderr and "## 4. The network, revised" in proc.stderr
        assert notebook.read_bytes() == before and not (tmp_path / "out.ipynb").exists()
        assert sorted(p.name for p in notebook.parent.iterdir()) == ["backprop.ipynb", "visible_cases.json"]


def test_cli_missing_catalog_exits_2(tmp_path):
    course = _course(tmp_path, ["classification"], locales=False)
    notebook = course / "assignments" / "classification" / "classification.ipynb"
    before = notebook.read_bytes()
    proc = cli("translate", str(notebook), "--language", LANGUAGE, cwd=course)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "classification" in proc.stderr and "catalog" in proc.stderr
    assert notebook.read_bytes() == before


def test_update_keeps_translations_and_marks_a_changed_cell_untranslated(tmp_path):
    course = _course(tmp_path, ["optimizers"])
    notebook = course / "assignments" / "optimizers" / "optimizers.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    cell = next(c for c in nb.cells if translatable(c) and c.source.startswith("## 4."))
    cell.source = cell.source.replace("One bad batch", "A single bad batch")
    nbformat.write(nb, notebook)
    proc = cli("update", "optimizers", cwd=course)
    assert proc.returncode == 0, proc.stderr
    assert "1 untranslated" in proc.stdout
    assert ni.untranslated("optimizers", LANGUAGE, course) == [cell.source]
    kept = ni.load_catalog("optimizers", LANGUAGE, course)
    assert len(kept) == len(ni.messages(nb)) - 1
    assert kept.items() <= ni.load_catalog("optimizers", LANGUAGE).items()
    from babel.messages.pofile import read_po
    with ni.catalog_path("optimizers", LANGUAGE, course).open("rb") as handle:
        entry = read_po(handle)[cell.source]
    assert entry.fuzzy and CJK.search(entry.string)        # the old translation, to revise


# ---------------------------------------------------------------------------- make assignments LANGUAGE=
def _make_course(tmp_path):
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)  # older than .venv/.installed: no reinstall
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    shutil.copytree(ROOT / "solutions", tmp_path / "solutions", ignore=shutil.ignore_patterns("__pycache__"))
    return _course(tmp_path)


GENERATED = "sh -c 'echo regenerated > assignments/$$2/generated' nbgrader"   # generate_assignment, faked


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_make_assignments_with_language_releases_chinese_notebooks(tmp_path):
    course = _make_course(tmp_path)
    proc = subprocess.run(["make", "assignments", f"NBGRADER={GENERATED}", f"LANGUAGE={LANGUAGE}"],
                          cwd=course, capture_output=True, text=True, env=_env(LANGUAGE="en_US:en"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for a in ASSIGNMENTS:
        released = nbformat.read(course / "assignments" / a / f"{a}.ipynb", as_version=4)
        assert released == chinese(a)
        assert (course / "assignments" / a / "generated").is_file()


def test_make_assignments_without_language_changes_nothing(tmp_path):
    course = _make_course(tmp_path)
    before = _files(course / "assignments")
    # gettext's LANGUAGE in the environment is a user's locale, not the course's release language
    proc = subprocess.run(["make", "assignments", f"NBGRADER={GENERATED}"], cwd=course,
                          capture_output=True, text=True, env=_env(LANGUAGE=LANGUAGE))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = _files(course / "assignments")
    assert {k: v for k, v in after.items() if k.name != "generated"} == before


def test_make_assignments_restores_the_folder_when_translation_fails(tmp_path):
    course = _make_course(tmp_path)
    ni.catalog_path("classification", LANGUAGE, course).unlink()
    before = _files(course / "assignments" / "classification")
    proc = subprocess.run(["make", "assignments", f"NBGRADER={GENERATED}", f"LANGUAGE={LANGUAGE}"],
                          cwd=course, capture_output=True, text=True, env=_env())
    assert proc.returncode != 0
    assert "restored as it was" in proc.stdout and "classification" in proc.stderr, proc.stdout + proc.stderr
    assert _files(course / "assignments" / "classification") == before      # not even `generated`
    assert not (course / "assignments" / "backprop" / "generated").exists()  # stopped there


def _env(**extra):
    import os
    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "MAKEFLAGS", "MAKELEVEL")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}
