// The stock page: every product of the chosen cabinets against its par level, with sales per
// day; par levels edited by those who may; and the pick list for the route (the chosen
// cabinets): what to bring so each product is at par after the sales expected before the
// visit. Printable.

import { get, put, query } from "./api.js";
import { h, when } from "./dom.js";
import { lang, t } from "./i18n.js";

export async function render(main, { me, problem }) {
  const mayEdit = me.permissions.includes("adjust");
  const { cabinets } = await get("/v1/operator/cabinets");
  const chosen = h("div", { class: "filters", id: "route" }, cabinets.map((c) => h("label", {},
    h("input", { type: "checkbox", value: c.cabinet_id, checked: cabinets.length <= 10 }), ` ${c.cabinet_id}`)));
  const days = h("input", { id: "days-ahead", type: "number", min: 0, max: 60, step: 0.5, value: 1, size: 4 });
  const out = h("div", { id: "stock" });
  main.append(h("h1", {}, t("nav_stock")),
    h("section", { class: "card" }, h("h2", {}, t("route")), chosen,
      h("div", { class: "filters" }, h("label", { for: "days-ahead" }, t("days_ahead")), days,
        h("button", { class: "action", type: "button", onclick: () => window.print() }, t("print")))),
    out);

  const refresh = async () => {
    const ids = [...chosen.querySelectorAll("input:checked")].map((i) => i.value);
    if (!ids.length) { out.replaceChildren(h("p", { class: "card muted" }, t("choose_cabinets"))); return; }
    const params = new URLSearchParams(ids.map((id) => ["cabinet_id", id]));
    const picks = await get(`/v1/operator/pick-list?${params}&days_ahead=${Number(days.value) || 0}`);
    const stock = await get(`/v1/operator/stock?${params}`);
    const bring = new Map(picks.lines.map((l) => [`${l.cabinet_id}/${l.sku}`, l]));
    const total = {};
    out.replaceChildren(...ids.map((id) => {
      const products = stock.products.filter((p) => p.cabinet_id === id);
      for (const p of products) {
        const b = bring.get(`${id}/${p.sku}`);
        if (b && b.bring) total[p.sku] = (total[p.sku] || 0) + b.bring;
      }
      return section(id, products, bring, mayEdit, async (pars) => {
        try { await put(`/v1/operator/cabinets/${encodeURIComponent(id)}/par`, { pars }); problem(""); await refresh(); }
        catch (e) { problem(e.message); }
      });
    }), h("section", { class: "card", id: "pick-total" }, h("h2", {}, t("pick_total")),
      Object.keys(total).length ? h("ul", { class: "lines" }, Object.entries(total).sort().map(([sku, n]) =>
        h("li", { "data-sku": sku }, `${sku} ×${n}`))) : h("p", { class: "muted" }, t("none"))));
  };
  chosen.addEventListener("change", () => refresh().catch((e) => problem(e.message)));
  days.addEventListener("change", () => refresh().catch((e) => problem(e.message)));
  await refresh();
}

function section(id, products, bring, mayEdit, savePars) {
  const name = (p) => (lang() === "zh" ? p.name_zh : p.name_en) || p.sku;
  const inputs = {};
  const rows = products.map((p) => {
    const b = bring.get(`${id}/${p.sku}`);
    inputs[p.sku] = h("input", { type: "number", min: 0, value: p.par ?? "", size: 4, "data-sku": p.sku, disabled: !mayEdit });
    return h("tr", { "data-sku": p.sku },
      h("td", {}, p.shelf ?? "–"), h("td", {}, name(p)),
      h("td", { class: "num", "data-count": p.count ?? "" }, p.count ?? t("not_counted")),
      h("td", { class: "num" }, inputs[p.sku]),
      h("td", { class: "num" }, p.per_day.toFixed(1)),
      h("td", { class: "num", "data-bring": b && b.bring !== null ? b.bring : "" },
        b ? (b.bring === null ? t("count_on_site") : String(b.bring)) : "–"));
  });
  return h("section", { class: "card", "data-cabinet": id },
    h("h2", {}, id),
    h("table", {}, h("thead", {}, h("tr", {}, [t("shelf"), t("product"), t("count"), t("par"), t("per_day"), t("bring")]
      .map((x, i) => h("th", { class: i >= 2 ? "num" : null }, x)))), h("tbody", {}, rows)),
    mayEdit && products.length ? h("button", { class: "action", type: "button", "data-save-par": id, onclick: () => {
      const pars = {};
      for (const [sku, input] of Object.entries(inputs)) pars[sku] = input.value === "" ? null : Number(input.value);
      savePars(pars);
    } }, t("save_par")) : null,
    products.length && products[0].counted_at ? h("p", { class: "muted" }, `${t("counted")}: ${when(products[0].counted_at)}`) : null);
}
