"""Student notebooks in another language: their instructions translated, their tests unchanged.

The translatable texts of a student notebook (``assignments/<a>/<a>.ipynb``) are the sources of its
markdown cells that are not nbgrader cells: one message per cell. An nbgrader cell (code, tests, a
written answer such as ``warmup-answer``) is never touched, nor is any cell's id or metadata, so
nbgrader and the autograder see the same cells, tests, points and checksums in every language.

The translations live in gettext catalogs, ``locales/<language>/LC_MESSAGES/assignments/<a>.po``
(read with babel; a fuzzy entry counts as untranslated)::

    python -m autograder.notebook_i18n update optimizers classification backprop
        (re)writes each catalog from the current student notebook, keeping every translation;
        a changed cell's old translation stays in the catalog as a fuzzy entry to revise
    python -m autograder.notebook_i18n translate assignments/optimizers/optimizers.ipynb --language zh_CN
        translates the notebook in place (or into -o OUT); exit 2, writing nothing, when the catalog
        or a cell's translation is missing

``make assignments LANGUAGE=zh_CN`` releases translated notebooks. This module imports only the
standard library; babel and nbformat are imported when a catalog is read or a file written.
"""
from __future__ import annotations

import copy
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LANGUAGE = "zh_CN"


class TranslationError(Exception):
    """A notebook cannot be translated; the message is one line that says why."""


class MissingCatalog(TranslationError):
    pass


class MissingTranslation(TranslationError):
    pass


class Translations(dict):
    """msgid -> msgstr of one assignment's catalog, only the finished (non-fuzzy, non-empty) entries."""

    def __init__(self, entries: Mapping[str, str] = (), assignment: str | None = None,
                 language: str | None = None, path: Path | None = None):
        super().__init__(entries)
        self.assignment, self.language, self.path = assignment, language, path


# ---------------------------------------------------------------------------- paths
def student_notebook(assignment: str, root: Path | str = REPO_ROOT) -> Path:
    return Path(root) / "assignments" / assignment / f"{assignment}.ipynb"


def catalog_path(assignment: str, language: str = DEFAULT_LANGUAGE, root: Path | str = REPO_ROOT) -> Path:
    return Path(root) / "locales" / language / "LC_MESSAGES" / "assignments" / f"{assignment}.po"


# ---------------------------------------------------------------------------- messages
def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def is_translatable(cell) -> bool:
    """A markdown cell that is not an nbgrader cell and has text."""
    return (cell.get("cell_type") == "markdown" and "nbgrader" not in (cell.get("metadata") or {})
            and bool(_source(cell).strip()))


def _cells(notebook) -> list:
    if isinstance(notebook, (str, Path)):
        notebook = json.loads(Path(notebook).read_text(encoding="utf-8"))
    return notebook["cells"]


def messages(notebook) -> list[str]:
    """The translatable texts of a student notebook (a parsed notebook or a path), in order: the
    source of every markdown cell without nbgrader metadata, one message per cell. Empty markdown
    cells have nothing to translate and are left out."""
    return [_source(cell) for cell in _cells(notebook) if is_translatable(cell)]


def _first_line(text: str) -> str:
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line if len(line) <= 80 else line[:77] + "..."


# ---------------------------------------------------------------------------- translating
def translate(notebook, catalog: Mapping[str, str], assignment: str | None = None):
    """A copy of `notebook` in which the source of every translatable markdown cell is replaced by
    its translation in `catalog` (msgid -> msgstr; a babel Catalog works too, less its fuzzy
    entries). Code cells, nbgrader cells, cell ids and all metadata are left as they are.

    A cell that already holds one of the catalog's translations is kept (translating twice is
    translating once). Any other cell without a translation raises MissingTranslation, naming the
    assignment and the cell's first line; `notebook` itself is never changed."""
    catalog = _as_mapping(catalog)
    name = assignment or getattr(catalog, "assignment", None) or "notebook"
    done = set(catalog.values())
    out = copy.deepcopy(notebook)
    missing = []
    for cell in out["cells"]:
        if not is_translatable(cell):
            continue
        source = _source(cell)
        if source in catalog:
            cell["source"] = catalog[source]
        elif source not in done:
            missing.append(cell)
    if missing:
        cell = missing[0]
        where = f" ({cell['id']})" if cell.get("id") else ""
        more = f", and {len(missing) - 1} more cell(s)" if len(missing) > 1 else ""
        language = getattr(catalog, "language", None)
        raise MissingTranslation(
            f"{name}: no {language + ' ' if language else ''}translation for the markdown cell "
            f"{_first_line(_source(cell))!r}{where}{more}; run `python -m autograder.notebook_i18n "
            f"update {name}` and translate it in {getattr(catalog, 'path', None) or 'the catalog'}")
    return out


def _as_mapping(catalog) -> Mapping[str, str]:
    if isinstance(catalog, Mapping):
        return catalog
    if hasattr(catalog, "fuzzy") and hasattr(catalog, "__iter__"):     # a babel Catalog
        return Translations({m.id: m.string for m in catalog
                             if m.id and isinstance(m.id, str) and m.string and not m.fuzzy},
                            assignment=getattr(catalog, "project", None) or None)
    raise TypeError(f"a catalog is a mapping msgid -> translation or a babel Catalog, not {type(catalog).__name__}")


def load_catalog(assignment: str, language: str = DEFAULT_LANGUAGE,
                 root: Path | str = REPO_ROOT) -> Translations:
    """The finished translations of one assignment's catalog; MissingCatalog if there is none."""
    path = catalog_path(assignment, language, root)
    if not path.is_file():
        raise MissingCatalog(f"{assignment}: no {language} catalog {path}; run "
                             f"`python -m autograder.notebook_i18n update {assignment}` to start one")
    from babel.messages.pofile import read_po
    with path.open("rb") as handle:
        po = read_po(handle)
    return Translations({m.id: m.string for m in po
                         if m.id and isinstance(m.id, str) and m.string and not m.fuzzy},
                        assignment=assignment, language=language, path=path)


def translate_file(notebook: Path | str, language: str = DEFAULT_LANGUAGE, out: Path | str | None = None,
                   root: Path | str = REPO_ROOT, assignment: str | None = None) -> Path:
    """Translate a notebook file (the assignment is its name, `<a>.ipynb`, unless given) into `out`
    (default: in place), written as nbgrader writes notebooks. Nothing is written unless every
    cell has its translation, and the file is replaced at once, never left half written."""
    import nbformat
    notebook = Path(notebook)
    assignment = assignment or notebook.stem
    catalog = load_catalog(assignment, language, root)
    translated = translate(nbformat.read(notebook, as_version=nbformat.NO_CONVERT), catalog, assignment)
    target = Path(out) if out else notebook
    text = nbformat.writes(translated)                   # as nbformat.write ends a file
    _replace(target, (text if text.endswith("\n") else text + "\n").encode("utf-8"))
    return target


def _replace(target: Path, data: bytes) -> None:
    """Write `data` to `target` at once (a temporary file renamed over it), keeping its mode."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------- catalogs
def untranslated(assignment: str, language: str = DEFAULT_LANGUAGE, root: Path | str = REPO_ROOT) -> list[str]:
    """The messages of the current student notebook that have no finished translation."""
    path = catalog_path(assignment, language, root)
    done = load_catalog(assignment, language, root) if path.is_file() else {}
    return [m for m in dict.fromkeys(messages(student_notebook(assignment, root))) if m not in done]


def update_catalog(assignment: str, language: str = DEFAULT_LANGUAGE, root: Path | str = REPO_ROOT) -> Path:
    """(Re)write the assignment's catalog from its current student notebook: one entry per
    translatable cell, existing translations kept (babel's Catalog.update: an entry whose English
    changed keeps its old translation marked fuzzy, which counts as untranslated until revised;
    entries of cells that are gone are dropped). Running it twice changes nothing."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import read_po, write_po

    notebook = student_notebook(assignment, root)
    if not notebook.is_file():
        raise TranslationError(f"{assignment}: no student notebook {notebook}; run `make assignments` first")
    path = catalog_path(assignment, language, root)
    header = (f"# {language} translations of the markdown cells of assignments/{assignment}/{assignment}.ipynb\n"
              f"# (python -m autograder.notebook_i18n update {assignment} rewrites this file from the notebook;\n"
              "# translate each msgstr; a fuzzy entry counts as untranslated).\n#")
    template = Catalog(locale=language, project=assignment, header_comment=header, fuzzy=False)
    for index, cell in enumerate(_cells(notebook)):
        if is_translatable(cell):
            template.add(_source(cell), auto_comments=[str(cell.get("id") or f"cell {index}")])
    if path.is_file():
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=language)
        catalog.update(template, update_creation_date=False)
        catalog.obsolete.clear()
    else:
        catalog = Catalog(locale=language, project=assignment, header_comment=header, fuzzy=False,
                          creation_date=template.creation_date, revision_date=template.creation_date)
        catalog.update(template)
    catalog.header_comment = header
    catalog.project, catalog.version, catalog.msgid_bugs_address = assignment, "student notebook", ""
    catalog.language_team = f"{language} <course staff>"
    catalog.last_translator = "course staff"
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=100, omit_header=False, sort_output=False,
             ignore_obsolete=True, include_previous=False)
    _replace(path, buffer.getvalue())
    return path


# ---------------------------------------------------------------------------- command line
def main(argv: Iterable[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m autograder.notebook_i18n",
                                     description="Translate the instructions of student notebooks.")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("translate", help="translate a student notebook with its assignment's catalog")
    t.add_argument("notebook", type=Path)
    t.add_argument("--language", required=True, help="e.g. zh_CN")
    t.add_argument("-o", "--output", type=Path, help="write here (default: the notebook, in place)")
    t.add_argument("--assignment", help="the catalog to use (default: the notebook's name)")
    t.add_argument("--root", type=Path, default=Path.cwd(), help="course folder with locales/ (default: here)")
    u = sub.add_parser("update", help="(re)write catalogs from the current student notebooks")
    u.add_argument("assignments", nargs="+")
    u.add_argument("--language", default=DEFAULT_LANGUAGE, help=f"default {DEFAULT_LANGUAGE}")
    u.add_argument("--root", type=Path, default=Path.cwd(), help="course folder (default: here)")
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        if args.command == "translate":
            if not args.notebook.is_file():
                raise TranslationError(f"no notebook {args.notebook}")
            translate_file(args.notebook, args.language, args.output, args.root, args.assignment)
        else:
            for a in args.assignments:
                path = update_catalog(a, args.language, args.root)
                left = untranslated(a, args.language, args.root)
                print(f"{path}: {len(set(messages(student_notebook(a, args.root))))} messages, "
                      f"{len(left)} untranslated")
    except TranslationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
