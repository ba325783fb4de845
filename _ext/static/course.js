// Course site: tables on phones. Below 600 px a table with more than two columns is shown as one
// card per row, each cell under its column's header (course.css), instead of squeezing every
// column into a few characters. The header's content (math included: MathJax typesets it after
// this runs) is copied into each cell as a label that only narrow screens show.
document.addEventListener("DOMContentLoaded", () => {
  for (const table of document.querySelectorAll("article.bd-article table.table")) {
    const headers = [...table.querySelectorAll("thead th")];
    if (headers.length < 3) continue;
    table.classList.add("course-cards");
    for (const row of table.querySelectorAll("tbody tr")) {
      [...row.children].forEach((cell, i) => {
        if (!headers[i]) return;
        const label = document.createElement("span");
        label.className = "course-cell-label";
        label.setAttribute("aria-hidden", "true");         // the real header is still there
        for (const node of headers[i].childNodes) label.appendChild(node.cloneNode(true));
        label.querySelectorAll("[id]").forEach((el) => el.removeAttribute("id"));
        cell.prepend(label);
      });
    }
  }
});

// The language switch (a header button, course_site.add_language_switch) opens the other edition
// in the same tab; the theme's link buttons open a new one.
document.addEventListener("DOMContentLoaded", () => {
  for (const link of document.querySelectorAll("a.btn-language-switch")) link.removeAttribute("target");
});
