// Search ranking for the course site (loaded on search.html by _ext/course_site.py): results on
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
