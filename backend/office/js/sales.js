// The sales page: revenue and units by day and by hour, an hour x weekday heat map, top sellers,
// sales by cabinet, the change against the previous period of the same length, and the
// transaction list with each sale's lines and weighing evidence. Refreshed every 5 s.

import { get, query, token } from "./api.js";
import { h, when, yuan } from "./dom.js";
import { lang, t } from "./i18n.js";

const REFRESH_MS = 5000;
const CHARTS = ["by-day", "by-hour", "heat", "top", "by-cabinet"];

export function period(choice, now = new Date()) {
  const end = new Date(now);
  end.setHours(24, 0, 0, 0);                       // the end of today, local time
  let start;
  if (choice === "month") start = new Date(now.getFullYear(), now.getMonth(), 1);
  else {
    start = new Date(end);
    start.setDate(start.getDate() - ({ today: 1, 30: 30 }[choice] || 7));
  }
  return { since: start, until: end };
}

export async function render(main, { problem }) {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const choice = h("select", { id: "period" },
    [["7", t("last_7")], ["30", t("last_30")], ["month", t("this_month")], ["today", t("today")]]
      .map(([v, label]) => h("option", { value: v }, label)));
  const cabinet = h("select", { id: "cabinet" }, h("option", { value: "" }, t("all")));
  const exportTable = h("select", { id: "export-table" }, ["sales", "inventory", "adjustments", "temperature"]
    .map((x) => h("option", { value: x }, t(`table_${x}`))));
  const exportButton = h("button", { class: "action", type: "button", id: "export" }, t("export_csv"));
  const totals = h("div", { class: "totals", id: "sales-totals" });
  const charts = Object.fromEntries(CHARTS.map((c) => [c, h("div", { class: "chart", id: `chart-${c}` })]));
  const list = h("div", { id: "transactions" });
  main.append(h("h1", {}, t("nav_sales")),
    h("div", { class: "filters" }, choice, cabinet, exportTable, exportButton),
    h("section", { class: "card" }, totals),
    h("div", { class: "grid" },
      h("section", { class: "card wide" }, h("h2", {}, t("by_day")), charts["by-day"]),
      h("section", { class: "card" }, h("h2", {}, t("by_hour")), charts["by-hour"]),
      h("section", { class: "card" }, h("h2", {}, t("heat")), charts.heat),
      h("section", { class: "card" }, h("h2", {}, t("top")), charts.top),
      h("section", { class: "card" }, h("h2", {}, t("by_cabinet")), charts["by-cabinet"]),
      h("section", { class: "card wide" }, h("h2", {}, t("transactions")), list)));
  const plots = Object.fromEntries(CHARTS.map((c) => [c, echarts.init(charts[c])]));
  const resize = () => Object.values(plots).forEach((p) => p.resize());
  window.addEventListener("resize", resize);

  const { cabinets } = await get("/v1/operator/cabinets");
  cabinet.append(...cabinets.map((c) => h("option", { value: c.cabinet_id }, c.cabinet_id)));

  const refresh = async () => {
    const { since, until } = period(choice.value);
    const before = new Date(since.getTime() - (until - since));
    const common = { tz: zone, cabinet_id: cabinet.value };
    const [now, previous, tx] = await Promise.all([
      get("/v1/operator/sales/summary" + query({ ...common, since: since.toISOString(), until: until.toISOString() })),
      get("/v1/operator/sales/summary" + query({ ...common, since: before.toISOString(), until: since.toISOString() })),
      get("/v1/operator/sales/transactions" + query({ since: since.toISOString(), until: until.toISOString(),
                                                      cabinet_id: cabinet.value, limit: 50 }))]);
    drawTotals(totals, now, previous);
    drawCharts(plots, { ...now, by_day: everyDay(since, until, now.by_day) });
    drawTransactions(list, tx.records);
  };
  exportButton.addEventListener("click", async () => {
    const { since, until } = period(choice.value);
    try {
      await download(`/v1/operator/exports/${exportTable.value}.csv` + query(
        { since: since.toISOString(), until: until.toISOString(), cabinet_id: cabinet.value }),
        `${exportTable.value}.csv`);
    } catch (e) { problem(e.message); }
  });
  choice.addEventListener("change", () => refresh().catch((e) => problem(e.message)));
  cabinet.addEventListener("change", () => refresh().catch((e) => problem(e.message)));
  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), REFRESH_MS);
  return () => { clearInterval(timer); window.removeEventListener("resize", resize);
                 Object.values(plots).forEach((p) => p.dispose()); };
}

/** Every day of the period, those without sales as zero (the summary lists only days with sales). */
function everyDay(since, until, days) {
  const found = new Map(days.map((d) => [d.day, d]));
  const all = [];
  for (const d = new Date(since); d < until; d.setDate(d.getDate() + 1)) {
    const key = d.toLocaleDateString("sv-SE");    // YYYY-MM-DD in the page's zone
    all.push(found.get(key) || { day: key, revenue_fen: 0, units: 0 });
  }
  return all;
}

function drawTotals(el, now, previous) {
  const change = (a, b) => b ? `${a >= b ? "+" : ""}${Math.round((a - b) / b * 100)}%` : "–";
  el.replaceChildren(
    h("div", {}, t("revenue"), h("b", { id: "period-revenue" }, yuan(now.revenue_fen)),
      h("span", { class: "muted" }, t("change", change(now.revenue_fen, previous.revenue_fen)))),
    h("div", {}, t("units"), h("b", { id: "period-units" }, String(now.units)),
      h("span", { class: "muted" }, t("change", change(now.units, previous.units)))));
}

function drawCharts(plots, s) {
  const money = (fen) => Math.round(fen) / 100;
  const common = { animation: false, tooltip: { trigger: "axis" }, grid: { left: 56, right: 16, top: 24, bottom: 28 } };
  plots["by-day"].setOption({ ...common, legend: { top: 0 },
    xAxis: { type: "category", data: s.by_day.map((d) => d.day) },
    yAxis: [{ type: "value", name: "¥" }, { type: "value", name: t("units"), splitLine: { show: false } }],
    series: [{ id: "revenue", name: t("revenue"), type: "bar", data: s.by_day.map((d) => money(d.revenue_fen)) },
             { id: "units", name: t("units"), type: "line", yAxisIndex: 1, data: s.by_day.map((d) => d.units) }] }, true);
  plots["by-hour"].setOption({ ...common,
    xAxis: { type: "category", data: s.by_hour_of_day.map((x) => String(x.hour)) },
    yAxis: { type: "value", name: "¥" },
    series: [{ id: "revenue", name: t("revenue"), type: "bar", data: s.by_hour_of_day.map((x) => money(x.revenue_fen)) }] }, true);
  const days = t("weekdays").split(",");
  const cells = s.weekday_hour_revenue_fen.flatMap((row, d) => row.map((fen, hour) => [hour, d, money(fen)]));
  plots.heat.setOption({ animation: false, tooltip: {}, grid: { left: 56, right: 16, top: 10, bottom: 60 },
    xAxis: { type: "category", data: [...Array(24).keys()].map(String) },
    yAxis: { type: "category", data: days, inverse: true },
    visualMap: { min: 0, max: Math.max(1, ...cells.map((c) => c[2])), calculable: false, orient: "horizontal", left: "center", bottom: 0, itemHeight: 80 },
    series: [{ id: "revenue", type: "heatmap", data: cells }] }, true);
  const top = s.by_product.slice(0, 10).reverse();
  plots.top.setOption({ ...common, grid: { ...common.grid, left: 110 },
    xAxis: { type: "value", name: "¥" }, yAxis: { type: "category", data: top.map((p) => p.sku) },
    series: [{ id: "revenue", name: t("revenue"), type: "bar", data: top.map((p) => money(p.revenue_fen)) }] }, true);
  const cabs = s.by_cabinet.slice(0, 20);
  plots["by-cabinet"].setOption({ ...common,
    xAxis: { type: "category", data: cabs.map((c) => c.cabinet_id), axisLabel: { rotate: 30 } },
    yAxis: { type: "value", name: "¥" },
    series: [{ id: "revenue", name: t("revenue"), type: "bar", data: cabs.map((c) => money(c.revenue_fen)) }] }, true);
}

function drawTransactions(el, records) {
  if (!records.length) { el.replaceChildren(h("p", { class: "muted" }, t("no_data"))); return; }
  const name = (l) => (lang() === "zh" ? l.name_zh : l.name_en) || l.sku;
  el.replaceChildren(h("table", { id: "transaction-table" },
    h("thead", {}, h("tr", {}, [t("at"), t("cabinet"), t("lines"), t("shelves"), t("flags"), t("total")]
      .map((x, i) => h("th", { class: i === 5 ? "num" : null }, x)))),
    h("tbody", {}, records.map((r) => h("tr", { "data-record": r.record_id },
      h("td", {}, when(r.created_at)),
      h("td", {}, r.cabinet_id),
      h("td", {}, h("ul", { class: "lines" }, (r.body.lines || []).map((l) =>
        h("li", { "data-sku": l.sku }, `${name(l)} ×${l.count} · ${yuan(l.amount_fen)}`)))),
      h("td", { class: "muted" }, (r.body.shelves || []).map((s) =>
        h("div", {}, `#${s.shelf}: ${fmt(s.before_grams)} → ${fmt(s.after_grams)} g`))),
      h("td", {}, (r.body.flags || []).map((f) => h("span", { class: "badge warn", title: f.detail || "" }, f.kind))),
      h("td", { class: "num" }, yuan(r.body.total_fen)))))));
}

const fmt = (g) => (g === null || g === undefined ? "–" : Number(g).toFixed(0));

/** Fetch a file with the login's token and hand it to the browser as a download. */
async function download(path, filename) {
  const reply = await fetch(path, { headers: { Authorization: `Bearer ${token()}` } });
  if (!reply.ok) {
    const body = await reply.json().catch(() => ({}));
    throw new Error(body.error || `HTTP ${reply.status}`);
  }
  const url = URL.createObjectURL(await reply.blob());
  const a = h("a", { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
