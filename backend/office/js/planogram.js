// The planogram page of one cabinet: its products (names, price, unit weight, tolerance,
// perishable) and what each shelf holds, as the cabinet last reported them; edited here and
// sent as set_planogram. The backend checks it with the cabinet's own rules first; the cabinet
// applies it between sessions and reports it back, which is what "applied" means here.

import { get, post } from "./api.js";
import { h, when } from "./dom.js";
import { t } from "./i18n.js";

export async function render(main, { me, params, problem }) {
  const id = params[0];
  const base = `/v1/operator/cabinets/${encodeURIComponent(id)}`;
  const mayEdit = me.commands.includes("set_planogram");
  const reported = h("p", { id: "reported", class: "muted" });
  const editor = h("div", { id: "planogram-editor" });
  const fates = h("div", { id: "planogram-commands" });
  main.append(h("h1", {}, `${t("nav_planogram")} · `, h("a", { href: `#/cabinet/${encodeURIComponent(id)}` }, id)),
              reported, editor, h("section", { class: "card" }, h("h2", {}, t("commands")), fates));
  let current = null;

  const load = async () => {
    try { current = await get(`${base}/planogram`); } catch (e) {
      if (e.status === 404) { reported.textContent = t("no_planogram"); return; }
      throw e;
    }
    reported.replaceChildren(`${t("version")} `, h("b", { id: "planogram-version" }, current.version || "–"),
      ` · ${t(current.reason === "replaced" ? "applied_at" : "reported_at")} ${when(current.reported_at)}`);
    editor.replaceChildren(form(current.document, mayEdit, async (planogram) => {
      try {
        await post(`${base}/commands`, { type: "set_planogram", args: { planogram }, lifetime_seconds: 3600 });
        problem("");
        await fatesRefresh();
      } catch (e) { problem(e.message); }
    }));
  };
  const fatesRefresh = async () => {
    const list = (await get(`${base}/commands?limit=50`)).commands.filter((c) => c.type === "set_planogram").slice(0, 5);
    fates.replaceChildren(list.length ? h("ul", { class: "lines" }, list.map((c) => h("li", { "data-command": c.command_id, "data-status": c.status },
      `${when(c.issued_at)} · ${c.issued_by || ""} · `, h("b", {}, t(c.status)), c.detail ? ` · ${c.detail}` : "")))
      : h("p", { class: "muted" }, t("none")));
  };
  await Promise.all([load(), fatesRefresh()]);
  let shown = current && current.reported_at;
  const timer = setInterval(async () => {
    try {
      await fatesRefresh();
      const now = await get(`${base}/planogram`);
      if (now.reported_at !== shown) { shown = now.reported_at; await load(); }   // applied
    } catch (e) { /* shown next time */ }
  }, 2000);
  return () => clearInterval(timer);
}

const FIELDS = [["sku", "text"], ["name_zh", "text"], ["name_bo", "text"], ["name_en", "text"],
                ["price_fen", "number"], ["unit_grams", "number"], ["tolerance_grams", "number"], ["perishable", "checkbox"]];

function form(document, mayEdit, send) {
  const products = document.products || document.product || [];
  const shelves = document.shelves || document.shelf || [];
  const body = h("tbody");
  const productRow = (p = {}) => h("tr", { "data-sku": p.sku || "" }, FIELDS.map(([key, type]) => h("td", {},
    h("input", { name: key, type, value: type === "checkbox" ? null : (p[key] ?? ""), checked: type === "checkbox" && !!p[key],
                 step: type === "number" ? "any" : null, size: key.startsWith("name") ? 12 : 6, disabled: !mayEdit }))));
  body.append(...products.map(productRow));
  const stock = h("tbody", {}, shelves.flatMap((s) => Object.entries(s.stock || {}).map(([sku, n]) => stockRow(s.id, sku, n, mayEdit))));
  const version = h("input", { name: "version", value: nextVersion(document.version), size: 16, disabled: !mayEdit });
  return h("form", { class: "card", id: "planogram-form", onsubmit: (e) => {
    e.preventDefault();
    const product = [...body.querySelectorAll("tr")].map((tr) => {
      const p = {};
      for (const [key, type] of FIELDS) {
        const input = tr.querySelector(`[name=${key}]`);
        p[key] = type === "checkbox" ? input.checked : type === "number" ? Number(input.value) : input.value.trim();
      }
      return p;
    }).filter((p) => p.sku);
    const byShelf = new Map();
    for (const tr of stock.querySelectorAll("tr")) {
      const shelf = Number(tr.querySelector("[name=shelf]").value), sku = tr.querySelector("[name=stock_sku]").value.trim();
      if (!sku) continue;
      if (!byShelf.has(shelf)) byShelf.set(shelf, {});
      byShelf.get(shelf)[sku] = Number(tr.querySelector("[name=count]").value);
    }
    send({ version: version.value.trim(), product, shelf: [...byShelf].map(([id, s]) => ({ id, stock: s })) });
  } },
    h("h2", {}, t("products")),
    h("div", { class: "scroll" }, h("table", { id: "product-table" },
      h("thead", {}, h("tr", {}, FIELDS.map(([key]) => h("th", {}, t(`field_${key}`))))), body)),
    mayEdit ? h("button", { type: "button", onclick: () => body.append(productRow()) }, t("add_product")) : null,
    h("h2", {}, t("shelves_stock")),
    h("table", { id: "shelf-table" }, h("thead", {}, h("tr", {}, [t("shelf"), t("product"), t("count")].map((x) => h("th", {}, x)))), stock),
    mayEdit ? h("button", { type: "button", onclick: () => stock.append(stockRow("", "", 0, true)) }, t("add_line")) : null,
    mayEdit ? h("div", { class: "filters" }, h("label", {}, `${t("version")} `, version),
                h("button", { class: "action", type: "submit" }, t("send_planogram"))) : null);
}

function stockRow(shelf, sku, n, mayEdit) {
  return h("tr", { "data-shelf": shelf, "data-sku": sku },
    h("td", {}, h("input", { name: "shelf", type: "number", min: 1, value: shelf, size: 3, disabled: !mayEdit })),
    h("td", {}, h("input", { name: "stock_sku", value: sku, size: 14, disabled: !mayEdit })),
    h("td", {}, h("input", { name: "count", type: "number", min: 0, value: n, size: 4, disabled: !mayEdit })));
}

function nextVersion(version) {
  const m = /^(.*?)(\d+)$/.exec(version || "");
  return m ? `${m[1]}${Number(m[2]) + 1}` : `${version || "v"}-1`;
}
