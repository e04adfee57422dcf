// The review page: sales the cabinet flagged and unauthorised removals, each with its weighing
// evidence and the candidates the cabinet found; the operator resolves each with the lines
// really taken, a void, a refund, or (removals) an acceptance with a note. The record is never
// edited: the backend writes an adjustment, and stock and the sales figures follow it.

import { get, post, query } from "./api.js";
import { h, when, yuan } from "./dom.js";
import { lang, t } from "./i18n.js";

export async function render(main, { me, problem }) {
  const mayAdjust = me.permissions.includes("adjust");
  const list = h("div", { id: "reviews" });
  const count = h("span", { id: "open-count", class: "badge warn" });
  main.append(h("h1", {}, t("nav_review"), " ", count), list);

  const refresh = async () => {
    const queue = await get("/v1/operator/reviews?limit=20");   // the oldest first
    count.textContent = String(queue.open);
    const prices = {};
    for (const id of new Set(queue.reviews.map((r) => r.cabinet_id))) {
      prices[id] = Object.fromEntries((await get("/v1/operator/stock" + query({ cabinet_id: id })))
        .products.map((p) => [p.sku, p]));
    }
    list.replaceChildren(...(queue.reviews.length ? queue.reviews.map((r) =>
      card(r, prices[r.cabinet_id] || {}, mayAdjust, async (resolution) => {
        try {
          await post(`/v1/operator/cabinets/${encodeURIComponent(r.cabinet_id)}/records/${r.record_id}/adjustment`, resolution);
          problem("");
          await refresh();
        } catch (e) { problem(e.message); }
      })) : [h("p", { class: "card muted" }, t("nothing_to_review"))]));
  };
  await refresh();
  const timer = setInterval(() => {
    // Not while someone is filling a form in.
    if (!list.contains(document.activeElement)) refresh().catch(() => {});
  }, 10000);
  return () => clearInterval(timer);
}

function card(review, products, mayAdjust, resolve) {
  const body = review.record.body;
  const sale = review.kind === "sale";
  const name = (sku) => (products[sku] && (lang() === "zh" ? products[sku].name_zh : products[sku].name_en)) || sku;
  const evidence = h("table", {}, h("tbody", {}, (body.shelves || []).map((s) => h("tr", {},
    h("td", {}, `#${s.shelf}`), h("td", { class: "num" }, `${grams(s.before_grams)} → ${grams(s.after_grams)} g`),
    h("td", { class: "num" }, s.difference_grams === null || s.difference_grams === undefined ? "–" : `${s.difference_grams} g`),
    h("td", {}, s.status || "")))));
  const flags = (body.flags || []).map((f) => h("div", { class: "flag" },
    h("span", { class: "badge warn" }, f.kind), f.shelf ? ` #${f.shelf} ` : " ", f.detail || "",
    f.difference_grams !== undefined ? ` (${f.difference_grams} g)` : ""));
  const recorded = (body.lines || []).map((l) => h("li", {}, `${name(l.sku)} ×${l.count} · ${yuan(l.amount_fen)}`));
  const section = h("section", { class: "card review", "data-record": review.record_id },
    h("h2", {}, `${review.cabinet_id} · ${when(review.created_at)} · `, h("span", { class: "warn" }, review.reason)),
    h("div", { class: "grid" },
      h("div", {}, h("b", {}, sale ? t("recorded_lines") : t("removed")),
        recorded.length ? h("ul", { class: "lines" }, recorded) : h("p", { class: "muted" }, t("none")),
        sale ? h("p", {}, `${t("total")}: ${yuan(body.total_fen)}`) : h("p", {}, `${t("value")}: ${yuan(body.value_fen)}`),
        flags),
      h("div", {}, h("b", {}, t("shelves")), evidence)));
  if (mayAdjust) section.append(form(review, body, products, name, resolve));
  return section;
}

function form(review, body, products, name, resolve) {
  const sale = review.kind === "sale";
  const action = h("select", { name: "action" },
    (sale ? ["lines", "void", "refund", "accept"] : ["accept"]).map((a) => h("option", { value: a }, t(`action_${a}`))));
  const rows = h("tbody");
  const addLine = (sku = "", count = 1) => {
    const price = products[sku] ? products[sku].price_fen : "";
    const skuInput = h("input", { name: "sku", value: sku, list: `skus-${review.record_id}`, size: 14, required: true });
    const priceInput = h("input", { name: "price", type: "number", min: 0, value: price, size: 6, required: true });
    skuInput.addEventListener("change", () => { if (products[skuInput.value]) priceInput.value = products[skuInput.value].price_fen; });
    rows.append(h("tr", {}, h("td", {}, skuInput),
      h("td", {}, h("input", { name: "count", type: "number", min: 0, value: count, size: 4, required: true })),
      h("td", {}, priceInput, h("span", { class: "muted" }, " fen")),
      h("td", {}, h("button", { type: "button", onclick: (e) => e.target.closest("tr").remove() }, "✕"))));
  };
  for (const l of body.lines || []) addLine(l.sku, l.count);
  const candidates = (body.flags || []).flatMap((f) => (f.candidates || []).map((c) =>
    h("button", { type: "button", class: "candidate", onclick: () => {
      for (const [sku, n] of Object.entries(c.counts)) addLine(sku, n);
    } }, "+ " + Object.entries(c.counts).map(([sku, n]) => `${name(sku)} ×${n}`).join(", "))));
  const editor = h("div", { class: "line-editor" },
    h("table", {}, h("thead", {}, h("tr", {}, [t("product"), t("units"), t("price"), ""].map((x) => h("th", {}, x)))), rows),
    h("datalist", { id: `skus-${review.record_id}` }, Object.keys(products).map((sku) => h("option", { value: sku }, name(sku)))),
    h("div", { class: "filters" }, h("button", { type: "button", onclick: () => addLine() }, t("add_line")), candidates));
  const note = h("input", { name: "note", placeholder: t("note"), maxlength: 500, size: 30 });
  const showEditor = () => { editor.hidden = action.value !== "lines"; };
  action.addEventListener("change", showEditor);
  showEditor();
  return h("form", { class: "resolve", onsubmit: (e) => {
    e.preventDefault();
    const lines = action.value !== "lines" ? [] : [...rows.querySelectorAll("tr")].map((tr) => ({
      sku: tr.querySelector("[name=sku]").value.trim(),
      count: Number(tr.querySelector("[name=count]").value),
      unit_price_fen: Number(tr.querySelector("[name=price]").value) }));
    resolve({ action: action.value, lines, note: note.value });
  } }, h("div", { class: "filters" }, action, note, h("button", { class: "action", type: "submit" }, t("resolve"))), editor);
}

const grams = (g) => (g === null || g === undefined ? "–" : Number(g).toFixed(0));
