// One cabinet: its status, temperature over 24 h or 7 days against the setpoint (door openings
// and compressor duty marked), active alarms, remote actions (only those the caller's role may
// issue) with each command's fate followed live, and its recent sales. A cabinet with several
// doors or temperature zones also shows them (each zone's reading, setpoint and food-safety
// rule, each door's shelves), its chart follows one zone at a time, and setpoints name a zone.

import { get, post, query } from "./api.js";
import { ago, celsius, h, when, yuan } from "./dom.js";
import { t } from "./i18n.js";
import { isOnline } from "./fleet.js";

const COMMANDS_MS = 1500;
const STATUS_MS = 5000;
const CLEARABLE = ["forced_open", "face_attempts", "settle_error"];

export async function render(main, { me, params, problem }) {
  const id = params[0];
  const base = `/v1/operator/cabinets/${encodeURIComponent(id)}`;
  const status = h("div", { class: "totals", id: "status" });
  const chart = h("div", { class: "chart tall", id: "temperature-chart" });
  // One door and one zone when the layout cannot be read: the page is still the cabinet's.
  const layout = await get(`${base}/layout`).catch(() => ({ doors: [], zones: [] }));
  const zones = layout.zones.length > 1 ? layout.zones : [];
  let range = "24h", zone = 1;
  const rangeButtons = h("div", { class: "filters" },
    ["24h", "7d"].map((r) => h("button", { type: "button", class: "action", "data-range": r,
                                           onclick: () => { range = r; drawClimate(); } }, t(r === "24h" ? "h24" : "d7"))),
    zones.map((z) => h("button", { type: "button", class: "action", "data-zone": z.zone,
                                   onclick: () => { zone = z.zone; drawClimate(); } }, `${t("zone")} ${z.zone} · ${z.name}`)));
  const doorsAndZones = h("div", { id: "layout" });
  const alarms = h("div", { id: "alarms" });
  const commands = h("div", { id: "commands" });
  const sales = h("div", { id: "recent-sales" });
  const software = h("div", { id: "software" });
  main.append(h("h1", {}, `${t("cabinet")} ${id}`),
    h("p", {}, h("a", { id: "planogram-link", href: `#/planogram/${encodeURIComponent(id)}` }, t("nav_planogram"))),
    h("section", { class: "card" }, status),
    layout.doors.length > 1 || zones.length ? h("section", { class: "card" }, h("h2", {}, t("layout")), doorsAndZones) : "",
    h("div", { class: "grid" },
      h("section", { class: "card wide" }, h("h2", { id: "chart-title" }), rangeButtons, chart),
      h("section", { class: "card" }, h("h2", {}, t("alarms")), alarms),
      actions(me, base, id, problem, () => refreshCommands(), layout),
      access(me, base, id, problem, () => refreshCommands()),
      h("section", { class: "card wide" }, h("h2", {}, t("commands")), commands),
      h("section", { class: "card wide" }, h("h2", {}, t("software")), software),
      h("section", { class: "card wide" }, h("h2", {}, t("recent_sessions")), sales)));
  const plot = echarts.init(chart);
  const resize = () => plot.resize();
  window.addEventListener("resize", resize);

  async function refreshStatus() {
    const { cabinets } = await get("/v1/operator/cabinets");
    const c = cabinets.find((x) => x.cabinet_id === id);
    if (!c) { problem(`no cabinet ${id}`); return; }
    const online = isOnline(c);
    status.replaceChildren(
      h("div", {}, t("status"), h("b", { class: online ? "online" : "offline", id: "cabinet-status", "data-status": online ? "online" : "offline" },
        online ? t("online") : t("offline"))),
      h("div", {}, t("temperature"), h("b", { id: "cabinet-temperature" }, celsius(c.temperature_celsius))),
      h("div", {}, t("setpoint"), h("b", { id: "cabinet-setpoint" }, celsius(c.setpoint_celsius))),
      h("div", {}, t("last_seen"), h("b", {}, ago(c.last_seen_at))),
      h("div", {}, t("last_sale"), h("b", {}, ago(c.last_sale_at))),
      h("div", {}, t("version"), h("b", {}, c.software_version || "–")));
    if (layout.doors.length > 1 || zones.length) await refreshLayout();
    const history = (await get(`${base}/alarms?limit=30`)).alarms;
    const lockout = (kind) => kind.split(":")[0] === "food_safety_lockout";
    alarms.replaceChildren(history.length ? h("ul", { class: "lines" }, history.map((a) =>
      h("li", { "data-alarm": a.kind, "data-active": a.cleared_at ? null : "" },
        h("b", { class: a.cleared_at ? "muted" : lockout(a.kind) ? "bad" : "warn" },
          lockout(a.kind) ? t("lockout") + a.kind.slice("food_safety_lockout".length) : a.kind),
        ` ${a.detail} · ${when(a.raised_at)}`,
        a.cleared_at ? h("span", { class: "muted" }, ` → ${t("cleared")} ${when(a.cleared_at)}`) : null)))
      : h("p", { class: "muted" }, t("none")));
  }

  async function refreshLayout() {
    const now = await get(`${base}/layout`);
    doorsAndZones.replaceChildren(
      now.zones.length ? h("table", { id: "zones" },
        h("thead", {}, h("tr", {}, [t("zone"), t("door"), t("temperature"), t("setpoint"), t("food_safety_rule")].map((x) => h("th", {}, x)))),
        h("tbody", {}, now.zones.map((z) => h("tr", { "data-zone": z.zone },
          h("td", {}, `${z.zone} · ${z.name}`), h("td", {}, z.doors.join(", ")),
          h("td", { class: "num", "data-celsius": z.temperature_celsius ?? "" }, celsius(z.temperature_celsius)),
          h("td", { class: "num" }, celsius(z.setpoint_celsius)),
          h("td", {}, t("rule_" + z.food_safety_rule)))))) : "",
      now.doors.length ? h("table", { id: "doors" },
        h("thead", {}, h("tr", {}, [t("door"), t("shelves")].map((x) => h("th", {}, x)))),
        h("tbody", {}, now.doors.map((d) => h("tr", { "data-door": d.door },
          h("td", {}, `${d.door} · ${d.name}`), h("td", {}, d.shelves.join(", ")))))) : "");
  }

  async function refreshCommands() {
    const list = (await get(`${base}/commands?limit=20`)).commands;
    commands.replaceChildren(list.length ? h("table", { id: "command-table" },
      h("thead", {}, h("tr", {}, [t("command"), t("status"), t("by"), t("at"), t("detail")].map((x) => h("th", {}, x)))),
      h("tbody", {}, list.map((c) => h("tr", { "data-command": c.command_id, "data-type": c.type },
        h("td", {}, t(c.type), h("div", { class: "muted" }, argsText(c.args))),
        h("td", {}, h("span", { class: "badge " + tone(c.status), "data-status": c.status }, t(c.status))),
        h("td", {}, c.issued_by || "–"),
        h("td", {}, when(c.finished_at || c.delivered_at || c.issued_at)),
        h("td", {}, c.detail || (c.result ? JSON.stringify(c.result).slice(0, 200) : ""))))))
      : h("p", { class: "muted" }, t("none")));
  }

  // The software update's steps as the cabinet reported them (docs/updates.md), newest first:
  // read in sequence order from where the last look stopped, the newest ten kept.
  let steps = [], afterSeq = 0;
  async function refreshSoftware() {
    for (;;) {
      const { records } = await get("/v1/operator/updates" + query({ cabinet_id: id, after_seq: afterSeq, limit: 500 }));
      if (!records.length) break;
      afterSeq = records[records.length - 1].seq;
      steps = records.slice(-10).reverse().concat(steps).slice(0, 10);
      if (records.length < 500) break;
    }
    software.replaceChildren(steps.length ? h("ul", { class: "lines", id: "update-steps" }, steps.map((r) =>
      h("li", { "data-state": r.body.state },
        h("span", { class: "badge " + stepTone(r.body.state) }, t("update_" + r.body.state)),
        ` ${r.body.version || ""} ${r.body.reason || ""} · ${when(r.created_at)}`)))
      : h("p", { class: "muted" }, t("none")));
  }

  async function refreshSales() {
    const until = new Date(Date.now() + 3600e3), since = new Date(Date.now() - 7 * 86400e3);
    const { records } = await get("/v1/operator/sales/transactions" + query(
      { since: since.toISOString(), until: until.toISOString(), cabinet_id: id, limit: 20 }));
    sales.replaceChildren(records.length ? h("table", {}, h("tbody", {}, records.map((r) => h("tr", {},
      h("td", {}, when(r.created_at)),
      h("td", {}, (r.body.lines || []).map((l) => `${l.name_zh || l.sku} ×${l.count}`).join(", ")),
      h("td", { class: "num" }, yuan(r.body.total_fen))))))
      : h("p", { class: "muted" }, t("no_data")));
  }

  async function drawClimate() {
    const named = zones.find((z) => z.zone === zone);
    document.getElementById("chart-title").textContent = t(range === "24h" ? "temperature_24h" : "temperature_7d")
      + (named ? ` · ${t("zone")} ${named.zone} ${named.name}` : "");
    chart.dataset.zone = zone;
    const now = Date.now();
    if (range === "24h") {
      const { records: all } = await get(`${base}/telemetry` + query({
        since: new Date(now - 86400e3).toISOString(), until: new Date(now + 60e3).toISOString() }));
      const records = all.filter((r) => (r.body.zone || 1) === zone);
      const at = (b, r) => b.sampled_at || r.created_at;
      const points = records.map((r) => [at(r.body, r), r.body.celsius]).reverse();
      plot.setOption(chartOption({
        temperature: points,
        setpoint: records.map((r) => [at(r.body, r), r.body.setpoint_celsius]).reverse(),
        doors: records.filter((r) => r.body.door_open).map((r) => [at(r.body, r), r.body.celsius]).reverse(),
        duty: records.filter((r) => r.body.compressor_duty !== null && r.body.compressor_duty !== undefined)
          .map((r) => [at(r.body, r), Math.round(r.body.compressor_duty * 100)]).reverse(),
      }), true);
      return;
    }
    const { hours: recent } = await get(`${base}/climate` + query({
      since: new Date(now - 7 * 86400e3).toISOString(), until: new Date(now + 3600e3).toISOString(), zone }));
    plot.setOption(chartOption({
      temperature: recent.map((x) => [x.hour, x.celsius_mean]),
      low: recent.map((x) => [x.hour, x.celsius_min]), high: recent.map((x) => [x.hour, x.celsius_max]),
      doors: recent.filter((x) => x.door_openings > 0).map((x) => [x.hour, x.celsius_max]),
    }), true);
  }

  await Promise.all([refreshStatus(), refreshCommands(), refreshSales(), refreshSoftware(), drawClimate()]);
  const timers = [
    setInterval(() => refreshCommands().catch(() => {}), COMMANDS_MS),
    setInterval(() => Promise.all([refreshStatus(), refreshSales(), refreshSoftware()]).catch(() => {}), STATUS_MS),
    setInterval(() => drawClimate().catch(() => {}), 60000),
  ];
  return () => { timers.forEach(clearInterval); window.removeEventListener("resize", resize); plot.dispose(); };
}

function chartOption({ temperature, setpoint = [], low = [], high = [], doors = [], duty = [] }) {
  const series = [
    { id: "temperature", name: t("temperature"), type: "line", showSymbol: false, data: temperature },
    { id: "setpoint", name: t("setpoint"), type: "line", step: "end", showSymbol: false, data: setpoint,
      lineStyle: { type: "dashed" } },
    { id: "doors", name: t("door_open"), type: "scatter", symbol: "triangle", symbolSize: 8, data: doors },
  ];
  if (low.length) series.push(
    { id: "low", name: "min", type: "line", showSymbol: false, data: low, lineStyle: { opacity: 0.4 } },
    { id: "high", name: "max", type: "line", showSymbol: false, data: high, lineStyle: { opacity: 0.4 } });
  if (duty.length) series.push({ id: "duty", name: t("compressor_duty"), type: "bar", yAxisIndex: 1,
                                 data: duty, itemStyle: { opacity: 0.3 } });
  return {
    animation: false, tooltip: { trigger: "axis" }, legend: { top: 0 },
    grid: { left: 44, right: 44, top: 36, bottom: 28 },
    xAxis: { type: "time" },
    yAxis: [{ type: "value", name: "°C", scale: true }, { type: "value", name: "%", min: 0, max: 100, splitLine: { show: false } }],
    series,
  };
}

function actions(me, base, id, problem, changed, layout) {
  const may = new Set(me.commands);
  const send = async (type, args) => {
    try {
      await post(`${base}/commands`, { type, args, lifetime_seconds: 300 });
      problem("");
      changed();
    } catch (e) { problem(e.status === 403 ? `${t("forbidden")} (${e.message})` : e.message); }
  };
  const forms = [];
  if (may.has("set_setpoint")) {
    const value = h("input", { id: "setpoint-input", type: "number", step: "0.5", required: true, inputmode: "decimal" });
    const zone = layout.zones.length > 1 ? h("select", { id: "setpoint-zone" }, layout.zones.map((z) =>
      h("option", { value: z.zone }, `${t("zone")} ${z.zone} · ${z.name}`))) : null;
    forms.push(h("form", { class: "inline", id: "set-setpoint", onsubmit: (e) => {
      e.preventDefault();
      send("set_setpoint", zone ? { celsius: Number(value.value), zone: Number(zone.value) } : { celsius: Number(value.value) }); } },
      h("label", { for: "setpoint-input" }, t("set_setpoint")), zone, value,
      h("button", { class: "action", type: "submit" }, t("send"))));
  }
  if (may.has("clear_alarm")) {
    // With several doors, each door's forced opening is its own alarm (forced_open:door2).
    const kinds = layout.doors.length > 1
      ? CLEARABLE.flatMap((k) => k === "forced_open" ? layout.doors.map((d) => `${k}:door${d.door}`) : [k]) : CLEARABLE;
    const kind = h("select", { id: "alarm-kind" }, kinds.map((k) => h("option", { value: k }, k)));
    forms.push(h("form", { class: "inline", id: "clear-alarm", onsubmit: (e) => {
      e.preventDefault(); send("clear_alarm", { kind: kind.value, by: me.username }); } },
      h("label", { for: "alarm-kind" }, t("clear_alarm")), kind, h("button", { class: "action", type: "submit" }, t("send"))));
  }
  if (may.has("clear_lockout") && layout.zones.length > 1) {
    // With several zones, the food checked is one zone's: its lockout alone is cleared.
    const zone = h("select", { id: "lockout-zone" }, layout.zones.map((z) =>
      h("option", { value: z.zone }, `${t("zone")} ${z.zone} · ${z.name}`)));
    forms.push(h("form", { class: "inline", id: "clear-lockout", onsubmit: (e) => {
      e.preventDefault();
      if (confirm(t("confirm_lockout"))) send("clear_lockout", { by: me.username, zone: Number(zone.value) }); } },
      h("label", { for: "lockout-zone" }, t("clear_lockout")), zone,
      h("button", { class: "action", type: "submit" }, t("send"))));
  }
  if (may.has("update_software")) {
    // A signed release on any http(s) server the cabinets reach; stage it on a few cabinets first.
    const url = h("input", { id: "release-url", type: "url", required: true, placeholder: "https://…/cabinet-x.y.z.release" });
    const sha = h("input", { id: "release-sha256", required: true, pattern: "[0-9a-f]{64}", placeholder: "sha256", size: 20 });
    forms.push(h("form", { class: "inline", id: "update-software", onsubmit: (e) => {
      e.preventDefault();
      if (confirm(t("confirm_update"))) send("update_software", { url: url.value.trim(), sha256: sha.value.trim() }); } },
      h("label", { for: "release-url" }, t("update_software")), url, sha,
      h("button", { class: "action", type: "submit" }, t("send"))));
  }
  const simple = [
    ["restock_mode", () => ({ technician: me.username })],
    ...(layout.zones.length > 1 ? [] : [["clear_lockout", () => confirm(t("confirm_lockout")) && { by: me.username }]]),
    ["end_session", () => ({ by: me.username })],
    ["request_diagnostics", () => ({})],
    ["restart", () => confirm(t("confirm_restart")) && { reason: `back office: ${me.username}` }],
  ];
  const buttons = simple.filter(([type]) => may.has(type)).map(([type, args]) =>
    h("button", { class: "action", type: "button", "data-command": type, onclick: () => {
      const a = args(); if (a) send(type, a); } }, t(type)));
  if (!forms.length && !buttons.length) return h("span", { hidden: true });
  return h("section", { class: "card", id: "actions" }, h("h2", {}, t("actions")), forms,
           h("div", { class: "filters" }, buttons));
}

// Face enrolment (with the member's consent, photographs measured by the backend and dropped)
// and access codes (a signed QR a shopper or technician scans at this cabinet).
function access(me, base, id, problem, changed) {
  if (!me.permissions.includes("fleet")) return h("span", { hidden: true });
  const member = h("input", { name: "member", placeholder: t("member_id"), required: true, size: 14 });
  const photos = h("input", { name: "photos", type: "file", accept: "image/jpeg,image/png", multiple: true, required: true });
  const consent = h("input", { name: "consent", type: "checkbox", required: true });
  const enrol = h("form", { class: "inline", id: "enrol-face", onsubmit: async (e) => {
    e.preventDefault();
    try {
      const files = [...photos.files].slice(0, 5);
      const encoded = await Promise.all(files.map((f) => new Promise((resolve, reject) => {
        const reader = new FileReader();
        reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
        reader.onerror = () => reject(reader.error);
        reader.readAsDataURL(f);
      })));
      await post(`${base}/faces`, { member_id: member.value.trim(), consent: consent.checked, photos: encoded });
      problem("");
      changed();
    } catch (err) { problem(err.message); }
  } }, h("b", {}, t("enrol_face")), member, photos, h("label", {}, consent, ` ${t("consent")}`),
    h("button", { class: "action", type: "submit" }, t("send")));
  const subject = h("input", { name: "subject", placeholder: t("account"), required: true, size: 14 });
  const role = h("select", { name: "role" }, h("option", { value: "shopper" }, t("shopper")),
                 h("option", { value: "technician" }, t("technician")));
  const minutes = h("input", { name: "minutes", type: "number", min: 1, max: 1440, value: 10, size: 4 });
  const shown = h("div", { id: "access-code" });
  const code = h("form", { class: "inline", id: "access-code-form", onsubmit: async (e) => {
    e.preventDefault();
    try {
      const made = await post("/v1/operator/access-codes", { audience: id, subject: subject.value.trim(),
        role: role.value, lifetime_seconds: Math.round(Number(minutes.value) * 60) });
      shown.replaceChildren(
        h("img", { class: "qr", alt: made.code, "data-code": made.code,
                   src: "data:image/svg+xml;charset=utf-8," + encodeURIComponent(made.qr_svg) }),
        h("p", { class: "muted" }, `${t("valid_until")} ${when(made.expires_at)}`));
      problem("");
    } catch (err) { problem(err.message); }
  } }, h("b", {}, t("access_code")), subject, role, h("label", {}, minutes, " min"),
    h("button", { class: "action", type: "submit" }, t("make_code")));
  return h("section", { class: "card", id: "access" }, h("h2", {}, t("access")), enrol, code, shown);
}

function stepTone(state) {
  return { healthy: "online", refused: "bad", install_failed: "bad", rolled_back: "bad" }[state] || "muted";
}

function tone(status) {
  return { done: "online", issued: "muted", delivered: "warn" }[status] || "bad";
}

function argsText(args) {
  if (!args || !Object.keys(args).length) return "";
  if ("celsius" in args) return celsius(args.celsius) + ("zone" in args ? ` · ${t("zone")} ${args.zone}` : "");
  return Object.entries(args).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ").slice(0, 120);
}
