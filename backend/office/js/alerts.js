// The alerts page: the rules (what to watch, for how long, whom to tell, quiet hours), a form
// for a new one (its webhook secret shown once), and the alerts that fired with every
// delivery's fate (sent, waiting for a retry with the error, failed).

import { call, get, post } from "./api.js";
import { h, when } from "./dom.js";
import { t } from "./i18n.js";

const KINDS = ["offline", "temperature", "lockout", "forced_open", "unauthorised", "sold_out", "no_sales"];
const REFRESH_MS = 5000;

export async function render(main, { me, problem }) {
  const mayEdit = me.permissions.includes("fleet");
  const rules = h("div", { id: "rules" });
  const fired = h("div", { id: "alerts" });
  const secret = h("p", { id: "webhook-secret", class: "warn", hidden: true });
  main.append(h("h1", {}, t("nav_alerts")),
    h("section", { class: "card" }, h("h2", {}, t("rules")), rules, secret, mayEdit ? newRule(async (rule) => {
      try {
        const made = await post("/v1/operator/alerts/rules", rule);
        secret.hidden = !made.webhook_secret;
        secret.replaceChildren(t("secret_once"), " ", h("code", { "data-secret": made.webhook_secret || "" }, made.webhook_secret || ""));
        problem("");
        await refresh();
      } catch (e) { problem(e.message); }
    }) : null),
    h("section", { class: "card" }, h("h2", {}, t("fired_alerts")), fired));

  const refresh = async () => {
    const [r, a] = await Promise.all([get("/v1/operator/alerts/rules"), get("/v1/operator/alerts")]);
    rules.replaceChildren(r.rules.length ? h("table", { id: "rule-table" }, h("tbody", {}, r.rules.map((rule) =>
      h("tr", { "data-rule": rule.rule_id },
        h("td", {}, t(`alert_${rule.kind}`), h("div", { class: "muted" }, rule.kind === "temperature"
          ? `${rule.minutes} min, ±${rule.band_celsius} °C` : `${rule.minutes} min`)),
        h("td", {}, rule.cabinet_id || t("all")),
        h("td", {}, [...rule.emails, rule.webhook_url].filter(Boolean).map((x) => h("div", {}, x))),
        h("td", {}, rule.quiet_start ? `${t("quiet")} ${rule.quiet_start}–${rule.quiet_end}` : ""),
        h("td", {}, mayEdit ? h("button", { type: "button", onclick: async () => {
          try { await call("DELETE", `/v1/operator/alerts/rules/${rule.rule_id}`); await refresh(); }
          catch (e) { problem(e.message); } } }, t("delete")) : null)))))
      : h("p", { class: "muted" }, t("none")));
    fired.replaceChildren(a.alerts.length ? h("table", { id: "alert-table" }, h("tbody", {}, a.alerts.map((alert) =>
      h("tr", { "data-alert": alert.alert_id, "data-state": alert.state },
        h("td", {}, when(alert.fired_at), h("div", { class: "muted" }, alert.resolved_at ? `${t("resolved")} ${when(alert.resolved_at)}` : "")),
        h("td", {}, h("b", { class: alert.state === "firing" ? "bad" : "online" }, t(`alert_${alert.kind}`)), ` ${alert.cabinet_id}`,
          h("div", { class: "muted" }, alert.detail)),
        h("td", {}, alert.deliveries.map((d) => h("div", { "data-delivery": d.channel, "data-status": d.status },
          h("span", { class: "badge " + (d.status === "sent" ? "online" : d.status === "failed" ? "bad" : "warn") }, t(`delivery_${d.status}`)),
          ` ${d.event === "resolved" ? t("resolved") + " · " : ""}${d.channel} ${d.target}`,
          d.last_error ? h("div", { class: "muted" }, `${d.attempts}× ${d.last_error}`) : null)))))))
      : h("p", { class: "muted" }, t("none")));
  };
  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), REFRESH_MS);
  return () => clearInterval(timer);
}

function newRule(submit) {
  const kind = h("select", { name: "kind" }, KINDS.map((k) => h("option", { value: k }, t(`alert_${k}`))));
  const minutes = h("input", { name: "minutes", type: "number", min: 0, step: "any", value: 15, size: 5 });
  const band = h("input", { name: "band", type: "number", min: 0.1, step: 0.1, value: 2, size: 4 });
  const cabinet = h("input", { name: "cabinet", placeholder: t("all"), size: 14 });
  const emails = h("input", { name: "emails", type: "text", placeholder: "a@example.cn, b@example.cn", size: 28 });
  const webhook = h("input", { name: "webhook", type: "url", placeholder: "https://…", size: 28 });
  const quietStart = h("input", { name: "quiet_start", type: "time" });
  const quietEnd = h("input", { name: "quiet_end", type: "time" });
  return h("form", { id: "new-rule", onsubmit: (e) => {
    e.preventDefault();
    submit({ kind: kind.value, minutes: Number(minutes.value), band_celsius: Number(band.value),
             cabinet_id: cabinet.value.trim() || null,
             emails: emails.value.split(/[,\s]+/).filter(Boolean), webhook_url: webhook.value.trim() || null,
             quiet_start: quietStart.value || null, quiet_end: quietEnd.value || null,
             tz: Intl.DateTimeFormat().resolvedOptions().timeZone || "Asia/Shanghai" });
  } },
    h("h2", {}, t("new_rule")),
    h("div", { class: "filters" }, kind, h("label", {}, t("minutes"), " ", minutes), h("label", {}, "± °C ", band), cabinet),
    h("div", { class: "filters" }, emails, webhook),
    h("div", { class: "filters" }, h("label", {}, t("quiet"), " ", quietStart, " – ", quietEnd),
      h("button", { class: "action", type: "submit" }, t("add_rule"))));
}
