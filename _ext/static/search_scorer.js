// Search for the course site (loaded on search.html by _ext/course_site.py): results on
// a page whose title contains the query rank first, so "momentum" finds the Momentum chapter
// before the glossary entry and the pages that mention momentum in passing.
// The rest is Sphinx's default Scorer (sphinx/themes/basic/static/searchtools.js), which this
// object replaces as a whole.
var Scorer = {
  score: (result) => {
    const [docname, title, anchor, descr, score] = result;
    const query = (new URLSearchParams(window.location.search).get("q") || "").toLowerCase().trim();
    const pageTitle = (title || "").split(" > ")[0].toLowerCase();
    return score + (query && pageTitle.includes(query) ? 100 : 0);
  },
  objNameMatch: 11,
  objPartialMatch: 6,
  objPrio: {0: 15, 1: 5, 2: -5},
  objPrioDefault: 0,
  title: 15,
  partialTitle: 7,
  term: 5,
  partialTerm: 2,
};

// Search result snippets are cut from each page's text, where math is TeX source ("\(m^t =
// \lambda m^{t-1} ...\)"). Before Sphinx takes the text: display equations are left out and
// inline math becomes plain text with Greek letters and symbols ("m^t = λ m^t-1 ...").
const TEX_SYMBOLS = {
  alpha: "α", beta: "β", gamma: "γ", delta: "δ", epsilon: "ε", varepsilon: "ε", eta: "η",
  theta: "θ", kappa: "κ", lambda: "λ", mu: "μ", nu: "ν", rho: "ρ", sigma: "σ", tau: "τ",
  phi: "φ", varphi: "φ", pi: "π", omega: "ω", Delta: "Δ", Sigma: "Σ", Theta: "Θ", nabla: "∇",
  partial: "∂", sum: "Σ", prod: "Π", infty: "∞", cdot: "·", times: "×", le: "≤", leq: "≤",
  ge: "≥", geq: "≥", ne: "≠", neq: "≠", approx: "≈", to: "→", rightarrow: "→", leftarrow: "←",
  in: "∈", odot: "⊙", ell: "ℓ", ln: "ln", log: "log", exp: "exp", max: "max", min: "min",
  sqrt: "√", lVert: "‖", rVert: "‖", lvert: "|", rvert: "|", dots: "…", ldots: "…", cdots: "⋯",
};

function texToText(tex) {
  return tex
    .replace(/^\s*(\\\(|\\\[|\$+)|(\\\)|\\\]|\$+)\s*$/g, "")
    .replace(/\\(frac|tfrac|dfrac)\s*\{([^{}]*)\}\s*\{([^{}]*)\}/g, "($2)/($3)")
    .replace(/\\([A-Za-z]+)/g, (match, name) => TEX_SYMBOLS[name] ?? "")
    .replace(/\\[,;:! ]/g, " ")
    .replace(/[{}]/g, "")
    .replace(/\s+/g, " ")
    .trim();
}

document.addEventListener("DOMContentLoaded", () => {     // runs before Search.init
  if (typeof Search === "undefined" || !Search.htmlToText) return;
  const htmlToText = Search.htmlToText;
  Search.htmlToText = (htmlString, anchor) => {
    const doc = new DOMParser().parseFromString(htmlString, "text/html");
    doc.querySelectorAll("div.math").forEach((el) => el.remove());
    doc.querySelectorAll("span.math").forEach((el) => el.replaceWith(texToText(el.textContent)));
    return htmlToText(doc.documentElement.outerHTML, anchor);
  };
});
