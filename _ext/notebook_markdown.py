"""Sphinx's resolved doctree of a notebook page -> the markdown cells of a plain Jupyter notebook.

The MyST source of a chapter is full of syntax that only Sphinx understands: roles ({term},
{cite}, {eq}, {ref}, {glue:text} ...), directives ({math}, {exercise}, {solution}, {note},
{bibliography}), labels (``(ch-momentum)=``). JupyterLab, Notebook 7 and Colab show them raw.
Instead of rewriting that syntax, this module writes Markdown from what Sphinx made of it: the
doctree after every reference is resolved, every glued value inserted and every equation and
exercise numbered. So the notebook says what the page says:

* cross-references, glossary terms and citations are links into the published site, with the
  text the page shows ("(3)", "Polyak, 1964", "momentum (动量)");
* glued values are the numbers the page shows;
* math is ``$...$`` and ``$$...$$`` (numbered equations keep their number with ``\\tag``);
* notes and exercises are block quotes, solutions are ``<details>`` that open on a click.

Code cells are not converted: the caller pairs each code-cell container of the doctree, in
order, with the notebook's own code cell (source and metadata unchanged).
"""
from __future__ import annotations

import html
import posixpath
import re
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

from docutils import nodes
from sphinx import addnodes

# Characters that Markdown (or Jupyter's math) would interpret in plain text.
_ESCAPE = re.compile(r"([\\`*_\[\]<>$|~])")


class Unsupported(Exception):
    """A doctree node this converter has no Markdown for (so the notebook would lose it)."""


def _escape(text: str) -> str:
    return _ESCAPE.sub(r"\\\1", text)


def _code_span(text: str) -> str:
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def is_code_cell(node: nodes.Node) -> bool:
    return isinstance(node, nodes.container) and node.get("nb_element") == "cell_code"


class MarkdownWriter:
    """Walks one resolved doctree; yields ("markdown", text) and ("code", container) in order."""

    def __init__(self, page_url: str, docname: str, numbers: dict[str, str]):
        self.page_url = page_url          # absolute URL of this page on the published site
        self.docname = docname
        self.numbers = numbers            # node id -> the number the page shows ("7", "3.2")
        self.cells: list[tuple[str, object]] = []
        self.block: list[str] = []        # markdown blocks of the cell being written

    # ------------------------------------------------------------------ cells
    def convert(self, doctree: nodes.document) -> list[tuple[str, object]]:
        self.blocks(doctree, level=0, out=self.block)
        self.flush()
        return self.cells

    def flush(self) -> None:
        text = "\n\n".join(b for b in self.block if b.strip()).strip("\n")
        if text:
            self.cells.append(("markdown", text))
        self.block.clear()

    # ------------------------------------------------------------------ links
    def url(self, node: nodes.Element) -> str:
        if node.get("refuri") is not None:
            uri = node["refuri"]
            parts = urlsplit(uri)
            if parts.scheme or uri.startswith("//"):
                return uri
            return urljoin(self.page_url, uri)
        if node.get("refid"):
            return f"{self.page_url}#{node['refid']}"
        return self.page_url

    # ------------------------------------------------------------------ blocks
    def blocks(self, parent: nodes.Element, level: int, out: list[str]) -> None:
        for child in parent.children:
            self.block_node(child, level, out)

    def block_node(self, node: nodes.Node, level: int, out: list[str]) -> None:
        if is_code_cell(node):
            if out is not self.block:
                raise Unsupported(f"a code cell inside {node.parent.tagname} (line {node.line})")
            self.flush()
            self.cells.append(("code", node))
            return
        if isinstance(node, (nodes.target, nodes.comment, nodes.substitution_definition,
                             nodes.system_message, nodes.meta)) or node.tagname == "meta":
            return
        if isinstance(node, nodes.Text):
            if node.astext().strip():
                out.append(_escape(node.astext()))
            return
        if isinstance(node, nodes.section):
            self.blocks(node, level + 1, out)
            return
        if isinstance(node, nodes.title):
            out.append("#" * max(level, 1) + " " + self.inline(node))
            return
        if isinstance(node, nodes.paragraph):
            out.append(self.inline(node))
            return
        if isinstance(node, nodes.math_block):
            out.append(self.display_math(node))
            return
        if isinstance(node, nodes.literal_block):
            lang = node.get("language", "")
            fence = "`" * max(3, max((len(m) for m in re.findall(r"`{3,}", node.astext())),
                                     default=0) + 1)
            out.append(f"{fence}{lang if lang not in ('default', 'none') else ''}\n"
                       f"{node.astext()}\n{fence}")
            return
        if isinstance(node, (nodes.bullet_list, nodes.enumerated_list)):
            out.append(self.list_(node, level))
            return
        if isinstance(node, nodes.definition_list):
            items = []
            for item in node.children:
                term = " ".join(self.inline(t) for t in item.children if isinstance(t, nodes.term))
                body = [c for c in item.children if isinstance(c, nodes.definition)]
                inner: list[str] = []
                for d in body:
                    self.blocks(d, level, inner)
                items.append(f"**{term}**  \n" + "\n\n".join(inner))
            out.append("\n\n".join(items))
            return
        if isinstance(node, nodes.table):
            out.append(self.table(node))
            return
        if isinstance(node, (nodes.figure, nodes.image)):
            out.append(self.image(node))
            return
        if isinstance(node, nodes.raw):
            # The theme's scripts (thebe's configuration) mean nothing in a notebook.
            if "html" in node.get("format", "").split() and "<script" not in node.astext():
                out.append(node.astext())
            return
        if isinstance(node, nodes.citation):          # a bibliography entry
            label = next((c for c in node.children if isinstance(c, nodes.label)), None)
            # (A second resolution of the page, as here, makes sphinxcontrib-bibtex append the
            # entry's text again to the citation nodes it keeps: each text once.)
            texts = dict.fromkeys(self.inline(p) for p in node.children
                                  if isinstance(p, nodes.paragraph))
            text = " ".join(texts)
            out.append(f"- {'**[' + _escape(label.astext()) + ']** ' if label else ''}{text}")
            return
        if isinstance(node, nodes.Admonition):     # note, tip ..., sphinx-exercise's nodes
            out.append(self.admonition(node, level))
            return
        if isinstance(node, nodes.rubric):
            out.append(f"**{self.inline(node)}**")
            return
        if isinstance(node, (nodes.compound, nodes.container, nodes.block_quote, nodes.topic,
                             nodes.line_block, nodes.Element)) and not isinstance(node, nodes.Inline):
            if isinstance(node, nodes.block_quote):
                inner: list[str] = []
                self.blocks(node, level, inner)
                out.append(self.quote("\n\n".join(inner)))
            elif node.tagname in ("toctree", "pending_xref") or "toctree-wrapper" in node.get("classes", []):
                return
            else:
                self.blocks(node, level, out)
            return
        if isinstance(node, nodes.Inline):           # inline content outside a paragraph
            out.append(self.inline(node))
            return
        raise Unsupported(f"{node.tagname} (line {getattr(node, 'line', None)})")

    @staticmethod
    def quote(text: str) -> str:
        return "\n".join("> " + line if line else ">" for line in text.splitlines())

    def admonition(self, node: nodes.Element, level: int) -> str:
        title_node = next((c for c in node.children if isinstance(c, nodes.title)), None)
        title = self.inline(title_node) if title_node is not None else \
            node.tagname.replace("_", " ").capitalize()
        fmt = title_node.get("title", "") if title_node is not None else ""
        if "%s" in fmt:       # numbered (sphinx-exercise): "Exercise %s" + " (subtitle)"
            number = self.numbers.get((node.get("ids") or [""])[0], "")
            title = _escape(fmt % number) + title
        inner: list[str] = []
        for child in node.children:
            if child is not title_node:
                self.block_node(child, level, inner)
        body = "\n\n".join(b for b in inner if b.strip())
        classes = node.get("classes", [])
        if "dropdown" in classes or "toggle" in classes or node.tagname == "solution_node":
            # Rendered by JupyterLab, Notebook 7 and Colab; closed until clicked, like the page.
            # (Markdown is not read inside <summary>: its title is plain text.)
            plain = " ".join(title_node.astext().split()) if title_node is not None else title
            return f"<details>\n<summary><b>{html.escape(plain)}</b></summary>\n\n{body}\n\n</details>"
        return self.quote(f"**{title}**\n\n{body}")

    def display_math(self, node: nodes.math_block) -> str:
        latex = node.astext().strip()
        if node.get("number") is not None and "\\tag" not in latex:
            number = self.numbers.get((node.get("ids") or [""])[0], node["number"])
            latex += f" \\tag{{{number}}}"
        return f"$$\n{latex}\n$$"

    def list_(self, node: nodes.Element, level: int) -> str:
        items = []
        for i, item in enumerate(node.children, start=node.get("start", 1)):
            marker = f"{i}. " if isinstance(node, nodes.enumerated_list) else "- "
            inner: list[str] = []
            self.blocks(item, level, inner)
            text = "\n\n".join(inner)
            pad = " " * len(marker)
            items.append(marker + text.replace("\n", "\n" + pad).replace("\n" + pad + "\n", "\n\n"))
        return "\n".join(items)

    def table(self, node: nodes.table) -> str:
        rows = []
        for row in node.findall(nodes.row):
            cells = []
            for entry in row.children:
                inner = [self.inline(p) for p in entry.children]
                cells.append(" ".join(inner).replace("\n", " ") or " ")
            rows.append(cells)
        header = [r for r in node.findall(nodes.thead)]
        n_head = len(list(header[0].findall(nodes.row))) if header else 0
        width = max(len(r) for r in rows)
        lines = []
        if n_head == 0:
            lines.append("| " + " | ".join([" "] * width) + " |")
            lines.append("|" + "---|" * width)
        for i, cells in enumerate(rows):
            lines.append("| " + " | ".join(cells) + " |")
            if i + 1 == n_head:
                lines.append("|" + "---|" * width)
        return "\n".join(lines)

    def image(self, node: nodes.Element) -> str:
        img = node if isinstance(node, nodes.image) else node.next_node(nodes.image)
        uri = img["uri"]
        src = uri if urlsplit(uri).scheme else urljoin(self.page_url, posixpath.join(
            "../" * self.docname.count("/") + "_images", posixpath.basename(uri)))
        text = f"![{_escape(img.get('alt', ''))}]({src})"
        caption = node.next_node(nodes.caption) if isinstance(node, nodes.figure) else None
        return text + (f"\n\n*{self.inline(caption)}*" if caption is not None else "")

    # ------------------------------------------------------------------ inline
    def inline(self, node: nodes.Node) -> str:
        if isinstance(node, nodes.Text):
            return _escape(node.astext()).replace("\n", " ")
        if isinstance(node, nodes.math):
            return f"${node.astext().strip()}$"
        if isinstance(node, nodes.literal):
            return _code_span(node.astext())
        if isinstance(node, (nodes.target, nodes.comment, nodes.system_message)):
            return ""
        if isinstance(node, nodes.image):
            return self.image(node)
        if isinstance(node, nodes.raw):
            return node.astext() if "html" in node.get("format", "").split() else ""
        inner = "".join(self.inline(c) for c in node.children)
        if isinstance(node, nodes.emphasis):
            return f"*{inner}*" if inner.strip() else inner
        if isinstance(node, nodes.strong):
            return f"**{inner}**" if inner.strip() else inner
        if isinstance(node, (nodes.reference, addnodes.download_reference)):
            if node.get("refuri") is None and not node.get("refid") and \
                    not isinstance(node, addnodes.download_reference):
                return inner
            if isinstance(node, addnodes.download_reference) and node.get("filename"):
                url = urljoin(self.page_url, "../" * self.docname.count("/") +
                              f"_downloads/{node['filename']}")
            else:
                url = self.url(node)
            lead = inner[:len(inner) - len(inner.lstrip())]     # "to[ Exercise 7]" -> "to [Exercise 7]"
            return f"{lead}[{inner.strip()}]({url})"
        if isinstance(node, (nodes.footnote_reference, nodes.citation_reference)):
            return f"[{inner}]({self.url(node)})"
        return inner


def notebook_markdown(doctree: nodes.document, page_url: str, docname: str,
                      fignumbers: dict[str, dict[str, tuple[int, ...]]],
                      ) -> list[tuple[str, object]]:
    """("markdown", text) and ("code", cell container) items of one page, in page order.
    `fignumbers` is env.toc_fignumbers[docname]: the numbers the page shows for equations,
    exercises and figures."""
    numbers = {node_id: ".".join(map(str, number)) for by_id in fignumbers.values()
               for node_id, number in by_id.items()}
    return MarkdownWriter(page_url, docname, numbers).convert(doctree)


# What no plain Jupyter Markdown cell should contain: MyST roles, directive fences, labels,
# colon fences. Used by the build (it fails on them) and by the tests.
MYST_LEFTOVERS: dict[str, Callable[[str], list[str]]] = {
    "role": lambda text: re.findall(r"\{[a-zA-Z][\w:.+-]*\}`[^`]*`", text),
    "directive": lambda text: re.findall(r"^\s*(?:`{3,}|~{3,})\s*\{[\w:.+-]+\}.*$", text, re.M),
    "label": lambda text: re.findall(r"^\s*\([\w:.+-]+\)=\s*$", text, re.M),
    "colon fence": lambda text: re.findall(r"^\s*:{3,}.*$", text, re.M),
}


def myst_leftovers(text: str) -> list[str]:
    return [f"{kind}: {hit.strip()}" for kind, find in MYST_LEFTOVERS.items()
            for hit in find(text)]
