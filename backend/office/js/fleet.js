// The fleet page: every cabinet's status at a glance (online or offline since when, temperature
// against its setpoint, alarms, lockout, products sold out, last sale, queue lag), sortable and
// filterable, and the
// fleet's sales today. Refreshed every 5 s.

import { get, query } from "./api.js";
import { ago, celsius, h, table, yuan } from "./dom.js";
import { t } from "./i18n.js";

// A cabinet uploads at least its telemetry every minute: three missed is offline.
export const ONLINE_SECONDS = 180;
const REFRESH_MS = 5000;

export function isOnline(cabinet, now = Date.now()) {
  return !!cabinet.last_seen_at && now - new Date(cabinet.last_seen_at).getTime() < ONLINE_SECONDS * 1000;
}

export function todayPeriod(now = new Date()) {
  const start = new Date(now);
  start.setHours(0, 0, 0, 0);
  const end = new Date(start);
  end.setDate(end.getDate() + 1);
  return { since: start.toISOString(), until: end.toISOString(),
           tz: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC" };
}

export async function render(main) {
  const filterText = h("input", { id: "filter", type: "search", placeholder: t("filter") });
  const filterKind = h("select", { id: "show" },
    h("option", { value: "all" }, t("all")), h("option", { value: "offline" }, t("only_offline")),
    h("option", { value: "alarms" }, t("only_alarms")));
  const totals = h("div", { class: "totals", id: "totals" });
  const list = h("div", { id: "cabinets" });
  main.append(h("h1", {}, t("cabinets")),
              h("section", { class: "card" }, totals),
              h("div", { class: "filters" }, filterText, filterKind),
              h("section", { class: "card" }, list));
  let cabinets = [];
  let sort = { sortKey: "status", up: true };

  const draw = () => {
    const now = Date.now();
    const words = filterText.value.trim().toLowerCase();
    const shown = cabinets.filter((c) =>
      (!words || c.cabinet_id.toLowerCase().includes(words)) &&
      (filterKind.value !== "offline" || !isOnline(c, now)) &&
      (filterKind.value !== "alarms" || c.alarms.length > 0)).map((c) => ({ ...c, id: c.cabinet_id }));
    const columns = [
      { key: "cabinet_id", label: t("cabinet"), value: (c) => c.cabinet_id,
        cell: (c) => h("a", { href: `#/cabinet/${encodeURIComponent(c.cabinet_id)}` }, c.cabinet_id) },
      { key: "status", label: t("status"), value: (c) => (isOnline(c, now) ? 1 : 0) * 1000 - c.alarms.length,
        cell: (c) => isOnline(c, now)
          ? h("span", { class: "badge online", "data-status": "online" }, t("online"))
          : h("span", { class: "badge offline", "data-status": "offline" },
              c.last_seen_at ? t("offline_since", ago(c.last_seen_at, now)) : t("offline")) },
      { key: "temperature", label: t("temperature"), num: true, value: (c) => c.temperature_celsius,
        cell: (c) => h("span", { class: band(c), "data-temperature": c.temperature_celsius ?? "" },
                       celsius(c.temperature_celsius),
                       c.setpoint_celsius !== null ? h("span", { class: "muted" }, ` / ${celsius(c.setpoint_celsius)}`) : null) },
      { key: "alarms", label: t("alarms"), value: (c) => c.alarms.length,
        cell: (c) => c.alarms.length ? c.alarms.map((a) => h("span", {
          class: "badge " + (a.kind === "food_safety_lockout" ? "bad" : "warn"), title: a.detail },
          a.kind === "food_safety_lockout" ? t("lockout") : a.kind)) : h("span", { class: "muted" }, t("none")) },
      { key: "sold_out", label: t("sold_out"), value: (c) => c.sold_out.length,
        cell: (c) => c.sold_out.length ? h("span", { class: "warn", "data-sold-out": c.sold_out.join(" ") }, c.sold_out.join(", ")) : "" },
      { key: "last_sale", label: t("last_sale"), value: (c) => c.last_sale_at, cell: (c) => ago(c.last_sale_at, now) },
      { key: "lag", label: t("lag"), num: true, value: (c) => c.lag_seconds,
        cell: (c) => c.lag_seconds === null ? "–" : `${Math.round(c.lag_seconds)} s` },
      { key: "version", label: t("version"), value: (c) => c.software_version, cell: (c) => c.software_version || "–" },
    ];
    const el = table(columns, shown, { ...sort, id: "fleet-table" });
    el.addEventListener("click", () => {   // after the table re-sorted itself: keep its order
      const th = el.querySelector("th.sorted");
      if (th) sort = { sortKey: th.dataset.key, up: th.classList.contains("up") };
    });
    list.replaceChildren(el);
  };

  const refresh = async () => {
    const period = todayPeriod();
    const [fleet, today] = await Promise.all([
      get("/v1/operator/cabinets"), get("/v1/operator/sales/summary" + query(period))]);
    cabinets = fleet.cabinets;
    const online = cabinets.filter((c) => isOnline(c)).length;
    totals.replaceChildren(
      h("div", {}, t("cabinets"), h("b", { id: "online-count" }, t("of_fleet", online, cabinets.length))),
      h("div", {}, `${t("today")} · ${t("revenue")}`, h("b", { id: "today-revenue" }, yuan(today.revenue_fen))),
      h("div", {}, `${t("today")} · ${t("units")}`, h("b", { id: "today-units" }, String(today.units))));
    draw();
  };
  filterText.addEventListener("input", draw);
  filterKind.addEventListener("change", draw);
  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), REFRESH_MS);
  return () => clearInterval(timer);
}

function band(c) {
  if (c.temperature_celsius === null || c.setpoint_celsius === null) return null;
  const off = Math.abs(c.temperature_celsius - c.setpoint_celsius);
  return off > 3 ? "bad" : off > 1.5 ? "warn" : null;
}
