"""Feedback in the course's language: message templates with named fields, translated by catalog.

A verdict or a label of the feedback is a :class:`Msg`: an English template with named fields,
``Msg("expected {count} items, got {got}", count="3", got="2")``. It is a ``str`` (existing callers
see text), rendered when it is made in the language :func:`using` sets for that moment, and it keeps
its template and fields (:meth:`Msg.as_data`), so the feedback can be written again in another
language (``autograder export --language``). Field values are text: format numbers where the message
is made (``f"{x:.2e}"``), never in the template.

Catalogs are gettext ``.po`` files read with babel: the autograder's own messages in
``autograder/locale/<lang>/LC_MESSAGES/autograder.po`` (shipped with the package); an assignment's
"Likely mistake" messages, whose English lives in its ``cases.py``, in
``<source_directory>/<assignment>/locale/<lang>.po`` beside it (the instructor's). A message without a
translation, or with a translation whose fields differ, is shown in English: never an error.

The language (one rule for every entry point, :func:`course_language`): ``--language`` of
``autograder grade``/``export``/``serve``, else ``language`` in service.toml's ``[service]`` table
(the service), else ``c.Autograder.language`` in the course's ``nbgrader_config.py``, else English.

``python -m autograder.messages check zh_CN [--root COURSE]`` lists what has no translation;
``... update zh_CN`` adds every missing message, untranslated, to the catalogs.
"""
from __future__ import annotations

import ast
import io
import string
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

DEFAULT = "en"
DOMAIN = "autograder"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
CONFIG_SECTION = "Autograder"  # c.Autograder.language in nbgrader_config.py (no nbgrader class has this name)
MAX_CATALOG_BYTES = 4 * 1024 * 1024  # a catalog larger than this (or not a regular file) is not read
MAX_FIELD = 500  # characters a field keeps in as_data (they may hold a visible case's returned values)


class UnknownLanguage(ValueError):
    """A language the autograder has no catalog for."""


def languages() -> list[str]:
    """English and every language with a catalog of the autograder's own messages."""
    return [DEFAULT] + sorted(p.parent.parent.name for p in LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def check_language(value, where: str = "") -> str:
    """`value` as a language the autograder has ("zh_CN"; "zh-CN" and "zh_cn" too); else UnknownLanguage."""
    text = str(value).strip().replace("-", "_")
    for lang in languages():
        if text.lower() == lang.lower():
            return lang
    raise UnknownLanguage(f"{where + ': ' if where else ''}unknown feedback language {value!r}; "
                          f"the autograder's feedback is available in {', '.join(languages())}")


def configured_language(root: Path | str) -> str | None:
    """``c.Autograder.language`` of the course's nbgrader configuration, as written (None: not set)."""
    try:
        from autograder.course import nbgrader_config
        value = nbgrader_config(Path(root)).get(CONFIG_SECTION, {}).get("language")
    except ImportError:  # a grader-only environment without jupyter_core: nothing configured
        return None
    return None if value is None else str(value)


def course_language(root: Path | str, *overrides: str | None) -> str:
    """The feedback language: the first of `overrides` given (``--language``, then service.toml's),
    else the course's ``nbgrader_config.py``, else English. Raises :class:`UnknownLanguage`."""
    for value in overrides:
        if value is not None:
            return check_language(value)
    value = configured_language(root)
    if value is None:
        return DEFAULT
    return check_language(value, f"{Path(root) / 'nbgrader_config.py'} (c.{CONFIG_SECTION}.language)")


# --------------------------------------------------------------------------- catalogs
def catalog_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def assignment_catalog(folder: Path | str, language: str) -> Path:
    """An assignment's catalog of its mistake messages: ``<folder>/locale/<language>.po``."""
    return Path(folder) / "locale" / f"{language}.po"


_LOADED: dict[str, tuple[int, dict[str, str]]] = {}
_LOAD_LOCK = threading.Lock()


def read_catalog(path: Path | str) -> dict[str, str]:
    """msgid -> msgstr of a .po file: translated entries only (fuzzy ones are not); {} if absent."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError:
        return {}
    stamp = (info.st_mtime_ns, info.st_size)
    with _LOAD_LOCK:
        cached = _LOADED.get(str(path))
        if cached and cached[0] == stamp:
            return cached[1]
        try:
            import stat as stat_
            if not stat_.S_ISREG(info.st_mode) or info.st_size > MAX_CATALOG_BYTES:
                raise ValueError(f"not a regular file of at most {MAX_CATALOG_BYTES} bytes")
            from babel.messages.pofile import read_po
            with open(path, "rb") as fh:
                catalog = read_po(io.BytesIO(fh.read(MAX_CATALOG_BYTES + 1)))
            table = {m.id: m.string for m in catalog
                     if m.id and isinstance(m.id, str) and isinstance(m.string, str) and m.string and not m.fuzzy}
        except Exception as exc:  # a broken catalog costs its translations, never a grade
            import warnings
            warnings.warn(f"{path}: cannot read this catalog ({type(exc).__name__}: {exc}); "
                          "its messages are shown in English", stacklevel=2)
            table = {}
        _LOADED[str(path)] = (stamp, table)
        return table


# (language, the assignment's folder or None) in use where a message is made
_ACTIVE: ContextVar[tuple[str, str | None]] = ContextVar("feedback_language", default=(DEFAULT, None))


@contextmanager
def using(language: str | None, assignment: Path | str | None = None):
    """Messages made inside are in `language` (None: English), mistakes from `assignment`'s catalog."""
    token = _ACTIVE.set((check_language(language or DEFAULT), str(assignment) if assignment else None))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def language() -> str:
    """The language messages are made in here and now."""
    return _ACTIVE.get()[0]


def translate(template: str, language: str | None = None, assignment: Path | str | None = None) -> str:
    """`template` in `language` (default: the one in use), or itself where no catalog has it."""
    lang, folder = _ACTIVE.get()
    lang = language or lang
    folder = assignment if assignment is not None else folder
    if lang == DEFAULT:
        return template
    if folder is not None:
        found = read_catalog(assignment_catalog(folder, lang)).get(template)
        if found:
            return found
    return read_catalog(catalog_path(lang)).get(template) or template


def fields_of(template: str) -> set[str]:
    """The named fields of a template ("{name}")."""
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError:  # unbalanced braces: no fields that format could fill
        return {"<malformed>"}


def plain_fields(text: str) -> list[str] | None:
    """The fields of a template in order when each is a plain name ("{count}": no attribute, index,
    conversion or format spec); None otherwise."""
    try:
        parts = [(name, conv, spec) for _, name, spec, conv in string.Formatter().parse(text) if name is not None]
    except ValueError:
        return None
    if any(not name.isidentifier() or conv or spec for name, conv, spec in parts):
        return None
    return sorted(name for name, _, _ in parts)


def _render(template: str, fields: dict) -> str:
    text = translate(template)
    if not fields:  # a plain sentence (e.g. a mistake): never formatted, so braces in it are text
        return text
    # A translation fills exactly the template's plain fields, or the English is shown: a translation
    # cannot reach a field's attributes ("{x.__class__}") or pad it to any size ("{x:>1000000000}").
    if text is not template and plain_fields(text) != plain_fields(template):
        text = template
    try:
        return text.format_map(fields)
    except Exception:  # noqa: BLE001 -- the English template itself is the last resort
        return template


# While a hidden case is judged (judges.hidden_case sets this), a message may carry only fields whose
# values the instructor fixed: tolerances, a mistake's sentence, the exception a call must raise, the
# required accuracy (never the accuracy reached: the returned model chooses it). Any other field could echo a hidden
# input, a hidden expected value or something the submission returned (a channel out of the
# sandbox), so a message with one is replaced by HIDDEN_GENERIC. Nested messages obey the same rule.
HIDDEN: ContextVar[bool] = ContextVar("judging_a_hidden_case", default=False)
HIDDEN_SAFE_FIELDS = frozenset({"rtol", "atol", "mistake", "exception", "threshold", "limit"})
HIDDEN_GENERIC = "returned a wrong result (the details are not shown for a hidden case)"


class Msg(str):
    """A message from an English template and its named fields, as text in the language in use.

    Fields are text (a nested Msg stays a Msg, so it is translated along with its parent)."""

    def __new__(cls, template: str, **fields):
        fields = {k: v if isinstance(v, Msg) else str(v) for k, v in fields.items()}
        if HIDDEN.get() and any(not isinstance(v, Msg) and k not in HIDDEN_SAFE_FIELDS
                                for k, v in fields.items()):
            return Msg(HIDDEN_GENERIC)
        self = super().__new__(cls, _render(template, fields))
        self.template, self.fields = template, fields
        return self

    def __reduce__(self):  # copy and pickle: the same text, template and fields
        return _restore, (str(self), self.template, self.fields)

    def as_data(self) -> dict:
        """``{"t": template, "f": {name: text or nested data}}``, each field at most MAX_FIELD characters."""
        return {"t": self.template, "f": {k: v.as_data() if isinstance(v, Msg) else v[:MAX_FIELD]
                                          for k, v in self.fields.items()}}


def _restore(text: str, template: str, fields: dict) -> Msg:
    self = str.__new__(Msg, text)
    self.template, self.fields = template, fields
    return self


def from_data(data) -> Msg:
    """A message written by :meth:`Msg.as_data`, made again in the language in use (ValueError if malformed)."""
    if not (isinstance(data, dict) and isinstance(data.get("t"), str) and isinstance(data.get("f", {}), dict)):
        raise ValueError("not a message")
    fields = {str(k): from_data(v) if isinstance(v, dict) else str(v) for k, v in data.get("f", {}).items()}
    return Msg(data["t"], **fields)


def render(data, language: str, assignment: Path | str | None = None) -> str:
    """Message data (:meth:`Msg.as_data`) as text in `language`."""
    with using(language, assignment):
        return str(from_data(data))


# --------------------------------------------------------------------------- what needs translating
def templates(files=None) -> dict[str, list[str]]:
    """Every template the autograder's code makes: the first argument of each ``Msg(...)`` call in
    ``autograder/`` (as xgettext would find them), a string literal or a module-level constant holding
    one, with where each is made."""
    root = Path(__file__).resolve().parent
    found: dict[str, list[str]] = {}
    for path in sorted(files if files is not None else root.rglob("*.py")):
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
        constants = {node.targets[0].id: node.value.value for node in tree.body
                     if isinstance(node, ast.Assign) and len(node.targets) == 1
                     and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Constant)
                     and isinstance(node.value.value, str)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and node.args and (getattr(node.func, "id", None) == "Msg"
                                                                 or getattr(node.func, "attr", None) == "Msg")):
                continue
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                template = first.value
            elif isinstance(first, ast.Name) and first.id in constants:
                template = constants[first.id]
            else:
                continue  # a message chosen elsewhere (an assignment's mistake): see mistakes()
            found.setdefault(template, []).append(f"{Path(path).name}:{node.lineno}")
    return found


def mistakes(folder: Path | str) -> dict[str, list[str]]:
    """Every "Likely mistake" message of an assignment (``<folder>/cases.py``): each case's Close judge
    asked for its known mistakes, on inputs drawn from the case's fixed seed; with the cases naming each."""
    import numpy as np
    from autograder.case import Case, case_seed, import_file
    folder = Path(folder)
    module = import_file(folder / "cases.py")
    found: dict[str, list[str]] = {}
    for case_id, case in sorted(module.CASES.items()):
        judge = case.judge if isinstance(case, Case) else None
        wrong = getattr(judge, "mistakes", None)
        if wrong is None:
            continue
        inputs = case.inputs(np.random.default_rng(case_seed(case_id)))
        for message in wrong(inputs):
            found.setdefault(message, []).append(case_id)
    return found


def untranslated(language: str, root: Path | str | None = None) -> list[tuple[Path, str]]:
    """(catalog, message) for every message of the autograder and of each assignment of the course at
    `root` (default: this repository) that `language` has no usable translation of."""
    from autograder.course import Course
    from autograder.case import REPO_ROOT
    language = check_language(language)
    if language == DEFAULT:
        return []
    missing = [(catalog_path(language), t) for t in templates() if not _translated(t, read_catalog(catalog_path(language)))]
    source = Course(root or REPO_ROOT).source_directory
    for folder in sorted(p.parent for p in source.glob("*/cases.py")):
        table = read_catalog(assignment_catalog(folder, language))
        missing += [(assignment_catalog(folder, language), m) for m in mistakes(folder) if not _translated(m, table)]
    return missing


def _translated(template: str, table: dict[str, str]) -> bool:
    return template in table and fields_of(table[template]) == fields_of(template)


def update(language: str, root: Path | str | None = None) -> list[Path]:
    """Add every message without an entry to its catalog (msgstr empty, for a translator); returns
    the catalogs changed. Existing translations are kept as they are."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import read_po, write_po
    changed = []
    by_path: dict[Path, list[str]] = {}
    for path, message in untranslated(language, root):
        by_path.setdefault(path, []).append(message)
    for path, messages in by_path.items():
        if path.exists():
            with open(path, "rb") as fh:
                catalog = read_po(fh)
        else:
            catalog = Catalog(locale=language, domain=DOMAIN if path == catalog_path(language) else None)
        new = [m for m in messages if m not in catalog]
        if not new:
            continue
        for m in new:
            catalog.add(m, "")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            write_po(fh, catalog, width=0)
        changed.append(path)
    return changed


if __name__ == "__main__":
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m autograder.messages",
                                description="The feedback's translations: what is missing, and adding it to the catalogs.")
    p.add_argument("command", choices=["check", "update"])
    p.add_argument("language")
    p.add_argument("--root", type=Path, default=None, help="course folder (default: this repository)")
    args = p.parse_args()
    try:
        if args.command == "update":
            for path in update(args.language, args.root):
                print(path)
            sys.exit(0)
        missing = untranslated(args.language, args.root)
    except UnknownLanguage as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    for path, message in missing:
        print(f"{path}: {message}")
    print(f"{len(missing)} messages without a {args.language} translation", file=sys.stderr)
    sys.exit(1 if missing else 0)
