// Building the pages: elements from plain values (text is always set as text, never parsed as
// HTML, so whatever a cabinet or a person wrote cannot become markup), and the formats.

import { lang, t } from "./i18n.js";

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function yuan(fen) {
  if (fen === null || fen === undefined) return "–";
  return "¥" + (fen / 100).toLocaleString(lang() === "zh" ? "zh-CN" : "en-GB",
                                          { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

export function celsius(c) {
  return c === null || c === undefined ? "–" : `${c.toFixed(1)} °C`;
}

export function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString(lang() === "zh" ? "zh-CN" : "en-GB",
                          { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** "3 min ago", "2 h ago", in the page's language. */
export function ago(iso, now = Date.now()) {
  if (!iso) return t("never");
  const s = Math.max(0, (now - new Date(iso).getTime()) / 1000);
  if (s < 90) return t("ago_s", Math.round(s));
  if (s < 5400) return t("ago_min", Math.round(s / 60));
  if (s < 172800) return t("ago_h", Math.round(s / 3600));
  return t("ago_d", Math.round(s / 86400));
}

/** A sortable table: columns are {key, label, num, value(row), cell(row)}. */
export function table(columns, rows, { sortKey, up = false, id } = {}) {
  let key = sortKey, ascending = up;
  const el = h("table", { id });
  const draw = () => {
    const col = columns.find((c) => c.key === key);
    const sorted = col ? [...rows].sort((a, b) => {
      const x = col.value(a), y = col.value(b);
      const order = x === y ? 0 : x === null || x === undefined ? 1 : y === null || y === undefined ? -1 : x < y ? -1 : 1;
      return ascending ? order : -order;
    }) : rows;
    el.replaceChildren(
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", {
        class: [c.num ? "num" : "", c.key === key ? "sorted" : "", c.key === key && ascending ? "up" : ""].join(" ").trim() || null,
        "data-key": c.key,
        onclick: () => { ascending = c.key === key ? !ascending : !!c.num === false; key = c.key; draw(); },
      }, c.label)))),
      h("tbody", {}, sorted.map((r) => h("tr", { "data-id": r.id ?? null },
        columns.map((c) => h("td", { class: c.num ? "num" : null }, c.cell ? c.cell(r) : c.value(r)))))));
  };
  draw();
  return el;
}
