"""Numbers typed by hand in the chapters' prose.

The book's rule: a number that an experiment produces is glued from the cell that computed it,
never typed. This scan lists every number in prose (outside code cells, including exercise
bodies and figure alt text) that *looks like a result*: a decimal or a power of ten written out,
a percentage, or any number after an approximation word ("about six", "≈ 0.35"). Numbers that are
not results — settings, constants of an equation, arithmetic done in the text from those constants,
dates — are listed in ALLOWED with the reason; anything else fails the test, so a hand-typed result
cannot slip in unnoticed.
"""
import re

import pytest

from conftest import ROOT

WORDS = ("one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty "
         "hundred thousand").split()
APPROX = r"(?:about|approximately|roughly|nearly|around|almost|≈|\\approx|~)"
NUMBER = r"(?:\d+(?:[.,]\d+)*(?:\s?\\?%)?|" + "|".join(WORDS) + r")\b"
# A decimal (0.35, 1e-3, 10^{-4} written out), a percentage, or an approximated number.
RESULT_LIKE = re.compile(
    rf"{APPROX}\s*\$?\s*(?P<approx>{NUMBER})(?!\s*/)"
    r"|(?<![\w.\-{^_])(?P<decimal>\d+\.\d+(?:\\times10\^\{-?\d+\})?)"
    r"|(?<![\w.\-{^_])(?P<percent>\d+(?:\.\d+)?\s?\\?%)",
    re.IGNORECASE,
)

# (chapter, number as written): why it is not a result of this chapter's cells.
ALLOWED = {
    ("momentum", "0.9"): "the momentum coefficient lambda, a setting",
    ("momentum", "0.05"): "the learning rate, a setting",
    ("momentum", "0.01"): "a loss threshold, a setting of the measurement",
    ("momentum", "1 %"): "the tolerance that defines 'near the saddle', a setting",
    ("momentum", "1.25"): "the tolerance of the cell's assert, a setting",
    ("momentum", "0.35"): "0.9^10, arithmetic on the constants in the same sentence",
    ("momentum", "0.5"): "lambda values the exercise asks to try",
    ("momentum", "0.7"): "lambda values the exercise asks to try",
    ("momentum", "0.8"): "lambda values the exercise asks to try",
    ("momentum", "0.99"): "a lambda setting of the under-damped run",
    ("momentum", "690"): "exercise solution: ln 1e6 / -ln(99/101), computed from the formula",
    ("momentum", "69"): "exercise solution: ln 1e6 / -ln(9/11), computed from the formula",
    ("momentum", "0.2"): "an effective step of the grid, a setting",
    ("momentum", "0.1"): "the learning rate of the local-minimum runs, a setting",
    ("momentum", "10 %"): "the tolerance of the cell's assert, a setting",
    ("momentum", "80 %"): "the threshold of the cell's assert, a setting",
    ("adaptive-lr", "12 %"): "the tolerance of the cell's assert, a setting",
    ("adaptive-lr", "0.8"): "the threshold of the cell's assert, a setting",
    ("adaptive-lr", "5 %"): "the tolerance of the cell's assert, a setting",
    ("critical-points", "1 %"): "the threshold of the cell's assert, a setting",
    ("lr-scheduling", "10 %"): "the tolerance of the cell's assert, a setting",
    ("adaptive-lr", "0.01"): "the curvature c of the surface, and the gentle slope of the walk: constants",
    ("adaptive-lr", "0.2"): "Adagrad's learning rate, a setting",
    ("adaptive-lr", "0.3"): "the exercise's learning rate, a setting",
    ("adaptive-lr", "0.81"): "beta_2 = beta_1^2, the exercise's setting",
    ("adaptive-lr", "0.23"): "sqrt((1-0.9)/(1+0.9)), the formula in the same sentence at t = 1",
    ("adaptive-lr", "0.999"): "Adam's beta_2, a setting",
    ("adaptive-lr", "0.99"): "RMSProp's alpha, a setting",
    ("lr-scheduling", "0.01"): "He et al.'s warmup rate, quoted from the paper",
    ("lr-scheduling", "0.1"): "He et al.'s rate, quoted from the paper",
    ("lr-scheduling", "80 %"): "He et al.'s threshold, quoted from the paper",
    ("lr-scheduling", "400"): "He et al.'s 'about 400 iterations', quoted from the paper",
    ("lr-scheduling", "0.2"): "the learning rate of the decay runs, a setting",
    ("lr-scheduling", "0.999"): "beta_2, a setting",
    ("lr-scheduling", "0.99"): "beta_2 of the exercise, a setting",
    ("lr-scheduling", "6.99\\times10^{-4}"): "(512 * 4000)^-0.5, arithmetic in the exercise solution",
    ("lr-scheduling", "92"): "effective sample count from the formula in the solution",
    ("lr-scheduling", "100"): "effective sample count from the formula in the solution",
    ("lr-scheduling", "199"): "(1 + 0.99)/(1 - 0.99), the formula in the solution",
    ("critical-points", "0.1"): "step lengths the exercise asks to try",
    ("critical-points", "0.5"): "step lengths the exercise asks to try",
    ("critical-points", "0.000025"): "s^4/4 at s = 0.1, the formula in the solution",
    ("critical-points", "0.016"): "s^4/4 at s = 0.5, the formula in the solution",
    ("critical-points", "0.25"): "s^4/4 at s = 1, the formula in the solution",
    ("classification", "0.0"): "the float value of an underflow, not a measurement",
    ("backprop", "10 %"): "chance accuracy with ten classes",
    ("backprop", "35 %"): "the tolerance of the cell's assert, a setting",
    ("backprop", "0.7"): "the point s of the chain-rule check, a setting",
    ("backprop", "0.25"): "a weight of the lecture's tiny network, or arithmetic on its weights",
    ("backprop", "0.5"): "a weight of the lecture's tiny network, or arithmetic on its weights",
    ("backprop", "1.5"): "arithmetic on the tiny network's weights in the worked example",
    ("backprop", "0.1"): "the learning rate, a setting",
    ("backprop", "2"): "the multiply-add count of the text (two products backward per one forward)",
    ("batch-size", "15"): "the order of the parameter count, from the architecture",
    ("classification", "709"): "ln of float64's largest value, a constant",
    ("classification", "0"): "the saturated softmax, the limit of the formula",
    ("classification", "0.5"): "the learning rate, a setting",
    ("classification", "1.8"): "the spacing of float64 at 1e4 (2^-39), a constant",
    ("classification", "0.018"): "softmax of (-2, 2, -inf) worked out in the exercise solution",
    ("classification", "0.982"): "softmax of (-2, 2, -inf) worked out in the exercise solution",
    ("classification", "0.1"): "norm worked out from the softmax in the exercise solution",
    ("classification", "1.4"): "norm of (y' - e_1) worked out in the exercise solution",
}


def prose_lines(text: str):
    """(line number, text) of what a reader reads as prose: everything outside code cells and
    other fenced blocks except exercise/solution bodies and admonitions, plus figure alt text.
    Labels and directive options are skipped; `{glue:...}` roles and inline code are blanked."""
    fence, kind, front = None, "", text.startswith("---\n")
    for n, line in enumerate(text.split("\n"), 1):
        if front:
            if n > 1 and line == "---":
                front = False
            continue
        opening = re.match(r"^(`{3,}|~{3,})\s*(?:\{([\w-]+)\})?", line)
        if fence:
            if line.strip() == fence:
                fence = None
            elif kind == "code-cell":
                alt = re.match(r"^\s*alt:\s*(.*)", line)
                if alt:
                    yield n, alt.group(1)
            elif kind not in ("math", "bibliography", "include") and not re.match(r"^:\w+:", line):
                yield n, line
            continue
        if opening:
            fence, kind = opening.group(1), opening.group(2) or ""
            continue
        yield n, line


def blank_roles(line: str) -> str:
    line = re.sub(r"\{[\w:-]+\}`[^`]*`", " ", line)     # {glue:text}`...`, {eq}`...`, {term}`...`
    line = re.sub(r"`[^`]*`", " ", line)                # inline code
    return re.sub(r"\]\([^)]*\)", "]", line)            # link targets


def hand_typed_numbers(text: str):
    """(line, number, context) for each result-like number typed in the prose of a chapter."""
    found = []
    for n, line in prose_lines(text):
        clean = blank_roles(line)
        for m in RESULT_LIKE.finditer(clean):
            number = next(g for g in m.groups() if g)
            found.append((n, re.sub(r"\s+", " ", number.replace("\\%", "%")), clean.strip()))
    return found


def chapters():
    return sorted(p for p in (ROOT / "book").glob("*.md") if "{code-cell}" in p.read_text())


@pytest.mark.parametrize("chapter", chapters(), ids=lambda p: p.stem)
def test_no_hand_typed_result_numbers(chapter):
    listed = [(n, num, ctx) for n, num, ctx in hand_typed_numbers(chapter.read_text())
              if (chapter.stem, num) not in ALLOWED]
    assert not listed, (
        f"{chapter.name}: numbers typed in prose that look like results; glue them from the cell, "
        "or add them to ALLOWED with the reason they are not results:\n"
        + "\n".join(f"  line {n}: {num!r} in: {ctx[:120]}" for n, num, ctx in listed))


def test_every_allowed_number_is_still_in_its_chapter():
    """A stale allow-list entry would silently excuse a future hand-typed result."""
    found = {(c.stem, num) for c in chapters() for _, num, _ in hand_typed_numbers(c.read_text())}
    assert set(ALLOWED) <= found, f"remove from ALLOWED: {sorted(set(ALLOWED) - found)}"


def test_the_scan_finds_typed_results_and_ignores_glue():
    chapter = "\n".join([
        "---", "jupytext: {}", "---", "# T",
        "The loss falls to 0.31 after 20 epochs, {glue:text}`x:.3f` with momentum.",
        "```{code-cell} python", "---", "mystnb:", "  image:",
        "    alt: the steps rise to about six and decay", "---", "y = 0.123  # code is not prose",
        "```",
        "```{math}", "0.5 x^2", "```",
        "It is $\\approx 3$ times faster, and 12 % more accurate.",
        "```{solution} ex", ":class: dropdown", "Steps: about 690.", "```",
    ])
    numbers = [num for _, num, _ in hand_typed_numbers(chapter)]
    assert numbers == ["0.31", "six", "3", "12 %", "690"]


def test_each_glossary_term_sits_under_the_chapter_that_first_uses_it():
    """The glossary groups terms by the chapter that introduces them (book/_glossary/<chapter>.md)."""
    import yaml
    order = [e["file"].split("/")[-1] for e in yaml.safe_load((ROOT / "_toc.yml").read_text())["chapters"]]
    placed = {}
    for part in (ROOT / "book" / "_glossary").glob("*.md"):
        for term in re.findall(r"^([^\s`][^\n]*)\n  ", part.read_text(encoding="utf-8"), re.M):
            placed[term.strip().lower()] = part.stem
    first = {}
    for chapter in order:
        source = ROOT / "book" / f"{chapter}.md"
        for ref in re.findall(r"\{term\}`([^`]*)`", source.read_text(encoding="utf-8")):
            target = re.search(r"<(.*)>", ref)
            first.setdefault((target.group(1) if target else ref).lower(), chapter)
    misplaced = {t: (g, first.get(t)) for t, g in placed.items() if first.get(t) != g}
    assert not misplaced, f"term: (glossary section, first chapter using it): {misplaced}"
