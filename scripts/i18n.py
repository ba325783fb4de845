"""The Chinese edition's vocabulary and catalogs: glossary terms, their LeeDL variants, and which
messages of the book still lack a translation.

The glossary (book/_glossary/*.md) is the one home of every term's Chinese name: a term line reads
``english term (中文)``, and where the LeeDL book uses another name the definition says
"the LeeDL book also writes 批量". The Chinese pages must use the first and never the second.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "book" / "_glossary"
LOCALE = ROOT / "locales" / "zh_CN" / "LC_MESSAGES"
_TERM = re.compile(r"^(?P<en>[^\s(`][^(]*?)(?: \((?P<zh>[^)]+)\))?$")   # a name alone: MNIST-1D
_VARIANT = re.compile(r"the LeeDL book also writes (?P<zh>[^\s),;]+)")


@dataclass(frozen=True)
class Term:
    en: str          # "learning rate"
    zh: str          # "学习率"; a name the glossary gives no Chinese for (MNIST-1D) is its own
    chapter: str     # "critical-points": the glossary section that defines it
    variants: tuple[str, ...] = ()   # other names (the LeeDL book's), never used on Chinese pages

    @property
    def source(self) -> str:
        """The term as the English glossary writes it."""
        return self.en if self.zh == self.en else f"{self.en} ({self.zh})"

    @property
    def heading(self) -> str:
        """The term as the Chinese glossary writes it."""
        return self.zh if self.zh == self.en else f"{self.zh}（{self.en}）"


def terms() -> list[Term]:
    found = []
    for path in sorted(GLOSSARY.glob("*.md")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            match = _TERM.match(line)
            if not match or line.startswith("```"):
                continue
            definition = []
            for follow in lines[i + 1:]:
                if not follow.startswith(" "):
                    break
                definition.append(follow)
            found.append(Term(match["en"], match["zh"] or match["en"], path.stem,
                              tuple(_VARIANT.findall(" ".join(definition)))))
    return found


def catalog(po: Path) -> dict[str, str]:
    """msgid -> msgstr of one .po file; fuzzy entries count as missing."""
    from babel.messages.pofile import read_po
    with po.open("rb") as handle:
        return {m.id: m.string for m in read_po(handle) if m.id and m.string and not m.fuzzy}


def untranslated(gettext: Path | None = None) -> list[tuple[str, str]]:
    """(page, msgid) for every message of the book with no translation. `gettext` holds the .pot
    files of a fresh extraction (scripts/book.py messages writes them to _build/gettext)."""
    from babel.messages.pofile import read_po
    gettext = gettext or ROOT / "_build" / "gettext"
    missing = []
    for pot in sorted(gettext.rglob("*.pot")):
        page = pot.relative_to(gettext).with_suffix("").as_posix()
        po = LOCALE / f"{page}.po"
        done = catalog(po) if po.exists() else {}
        with pot.open("rb") as handle:
            missing += [(page, m.id) for m in read_po(handle) if m.id and m.id not in done]
    return missing


# ---------------------------------------------------------------------------- checking a translation
# What a translation must carry over unchanged: glued values, references, citations, math, code.
_ROLE = re.compile(r"\{(?P<role>[\w:-]+)\}`(?P<body>[^`]*)`")
_MATH = re.compile(r"\$\$.+?\$\$|\$[^$]+\$", re.S)
_CODE = re.compile(r"``.+?``|`[^`]+`")
_TEXT_IN_MATH = re.compile(r"\\(?:text|mathrm|textrm)\{[^{}]*\}")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_WORD = re.compile(r"[A-Za-z]{3,}")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_TERM_BODY = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)


def _parts(text: str) -> tuple[list[str], list[str], list[str], list[str], str]:
    """(roles other than term, term targets, math, code, the prose left over)."""
    roles, targets = [], []
    for m in _ROLE.finditer(text):
        body = _TERM_BODY.match(m["body"])       # `text <target>`: the text is translated
        if m["role"] == "term":
            targets.append((body["target"] if body else m["body"]).strip().lower())
        else:
            roles.append(f"{{{m['role']}}}`<{body['target']}>`" if body else m.group(0))
    rest = _ROLE.sub(" ", text)
    math = [_TEXT_IN_MATH.sub(r"\\text{}", m) for m in _MATH.findall(rest)]
    rest = _MATH.sub(" ", rest)
    code = _CODE.findall(rest)
    rest = _CODE.sub(" ", rest)
    return sorted(roles), sorted(targets), sorted(math), sorted(code), rest


# Chinese text runs on into a glossary link whose text is Chinese: no space on either side.
_CJK_OR_PUNCT = "\u4e00-\u9fff\u3000-\u303f\uff00-\uffef"
_SPACE_BEFORE_TERM = re.compile(rf"(?<=[{_CJK_OR_PUNCT}]) +(?=\{{term\}}`[\u4e00-\u9fff])")
_SPACE_AFTER_TERM = re.compile(rf"(\{{term\}}`[^`<]*[{_CJK_OR_PUNCT}] <[^`>]*>`) +(?=[{_CJK_OR_PUNCT}])")


def tidy(msgstr: str) -> str:
    """Drop the spaces between Chinese text and a glossary link that reads in Chinese."""
    return _SPACE_AFTER_TERM.sub(r"\1", _SPACE_BEFORE_TERM.sub("", msgstr))


def problems(msgid: str, msgstr: str, glossary: dict[str, Term] | None = None) -> list[str]:
    """What is wrong with one translation; [] when nothing is."""
    glossary = glossary if glossary is not None else {t.source.lower(): t for t in terms()}
    if not msgstr:
        return ["not translated"]
    src, out = _parts(msgid), _parts(msgstr)
    found = []
    for name, a, b in (("roles (glue, eq, ref, cite, numref)", src[0], out[0]),
                       ("glossary terms linked", src[1], out[1]), ("math", src[2], out[2]),
                       ("inline code", src[3], out[3])):
        if a != b:
            found.append(f"{name} differ: source {sorted(set(a) - set(b))[:3]} vs translation "
                         f"{sorted(set(b) - set(a))[:3]}")
    typed = set(_NUMBER.findall(out[4])) - set(_NUMBER.findall(src[4]))
    if typed:
        found.append(f"numbers not in the source text: {sorted(typed)} (numbers come from the source "
                     "or from glue, never typed)")
    for m in _ROLE.finditer(msgstr):
        if m["role"] != "term":
            continue
        body = _TERM_BODY.match(m["body"])
        target = (body["target"] if body else m["body"]).strip().lower()
        term = glossary.get(target)
        if term is None:
            found.append(f"{m.group(0)}: no glossary term {target!r}")
        elif not (body["text"] if body else m["body"]).startswith(term.zh):
            found.append(f"{m.group(0)}: write {{term}}`{term.zh} <{target}>` (the text starts with "
                         f"the glossary's Chinese name {term.zh})")
    if tidy(msgstr) != msgstr:
        found.append("a space between Chinese text and a Chinese glossary link (scripts/i18n.py tidy)")
    for term in glossary.values():
        for variant in term.variants:
            if variant in msgstr and variant not in msgid:    # unless the English names it
                found.append(f"{variant!r}: the glossary's name for {term.en!r} is {term.zh!r}")
    prose_src = _WORD.findall(re.sub(r"\\[A-Za-z]+", " ", src[4]))   # LaTeX commands are not prose
    if prose_src and not _CJK.search(msgstr) and msgid.lower() not in glossary:   # a name
        found.append("no Chinese in the translation")
    return found


def check(po: Path) -> list[str]:
    """Every problem of one .po file, as 'line N: msgid...: problem'."""
    from babel.messages.pofile import read_po
    glossary = {t.source.lower(): t for t in terms()}
    with po.open("rb") as handle:
        catalog_ = read_po(handle)
    found = []
    for m in catalog_:
        if not m.id:
            continue
        issues = ["fuzzy"] if m.fuzzy else problems(m.id, m.string, glossary)
        term = glossary.get(m.id.lower()) if po.stem == "glossary" else None
        if term and m.string != term.heading:
            issues.append(f"a glossary term reads {term.heading}")
        found += [f"line {m.lineno}: {m.id[:60]!r}: {issue}" for issue in issues]
    return found


def tidy_catalog(po: Path) -> int:
    """Apply tidy() to every translation of a .po file; the number changed."""
    from babel.messages.pofile import read_po, write_po
    with po.open("rb") as handle:
        catalog_ = read_po(handle)
    changed = 0
    for m in catalog_:
        if m.id and m.string and tidy(m.string) != m.string:
            m.string, changed = tidy(m.string), changed + 1
    if changed:
        with po.open("wb") as handle:
            write_po(handle, catalog_, width=100)
    return changed


if __name__ == "__main__":
    import sys
    if sys.argv[1:2] == ["--tidy"]:
        for arg in sys.argv[2:]:
            print(f"{arg}: {tidy_catalog(Path(arg))} translation(s) tidied")
        sys.exit(0)
    bad = 0
    for arg in sys.argv[1:]:
        for line in check(Path(arg)):
            print(f"{arg}: {line}")
            bad += 1
    print(f"{bad} problem(s)")
    sys.exit(1 if bad else 0)
