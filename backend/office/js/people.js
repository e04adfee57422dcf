// The people page: accounts and their roles (admins create, change a role, set a password,
// disable) and the audit log (who did what, with its details), for those whose role may see it.

import { call, get, post, query } from "./api.js";
import { h, when } from "./dom.js";
import { t } from "./i18n.js";

const ROLES = ["viewer", "technician", "operator", "admin"];

export async function render(main, { me, problem }) {
  const mayPeople = me.permissions.includes("people");
  const mayAudit = me.permissions.includes("audit");
  main.append(h("h1", {}, t("nav_people")));
  if (!mayPeople && !mayAudit) { main.append(h("p", { class: "card muted" }, t("forbidden"))); return; }
  const accounts = h("div", { id: "accounts" });
  const log = h("div", { id: "audit" });
  const filter = h("input", { id: "audit-filter", type: "search", placeholder: t("audit_filter"), size: 24 });
  if (mayPeople) main.append(h("section", { class: "card" }, h("h2", {}, t("accounts")), accounts, newAccount(async (account) => {
    try { await post("/v1/operator/users", account); problem(""); await refreshAccounts(); }
    catch (e) { problem(e.message); }
  })));
  if (mayAudit) main.append(h("section", { class: "card" }, h("h2", {}, t("audit")),
    h("div", { class: "filters" }, filter), log));

  const change = async (username, body) => {
    try { await call("PATCH", `/v1/operator/users/${encodeURIComponent(username)}`, body); problem(""); await refreshAccounts(); }
    catch (e) { problem(e.message); }
  };
  const refreshAccounts = async () => {
    const { users } = await get("/v1/operator/users");
    accounts.replaceChildren(h("table", { id: "account-table" }, h("tbody", {}, users.map((u) => {
      const role = h("select", { "data-role-of": u.username }, ROLES.map((r) => h("option", { value: r, selected: r === u.role }, r)));
      role.addEventListener("change", () => change(u.username, { role: role.value }));
      return h("tr", { "data-user": u.username },
        h("td", {}, h("b", {}, u.username), u.disabled ? h("span", { class: "badge bad" }, t("disabled")) : null),
        h("td", {}, role), h("td", { class: "muted" }, when(u.created_at)),
        h("td", {}, u.username === me.username ? null : h("button", { type: "button", onclick: () =>
          change(u.username, { disabled: !u.disabled }) }, u.disabled ? t("enable") : t("disable")),
          h("button", { type: "button", onclick: () => {
            const password = prompt(t("new_password"));
            if (password) change(u.username, { password });
          } }, t("set_password"))));
    }))));
  };
  const refreshAudit = async () => {
    const words = filter.value.trim();
    const params = words.startsWith("cabinet") || words.startsWith("demo-") ? { cabinet_id: words } : words ? { actor: words } : {};
    const { entries } = await get("/v1/operator/audit" + query({ ...params, limit: 200 }));
    log.replaceChildren(entries.length ? h("table", { id: "audit-table" }, h("tbody", {}, entries.map((e) => h("tr", {},
      h("td", { class: "muted" }, when(e.at)), h("td", {}, e.actor), h("td", {}, h("b", {}, e.action)),
      h("td", {}, e.cabinet_id || ""), h("td", { class: "muted" }, JSON.stringify(e.detail).slice(0, 160))))))
      : h("p", { class: "muted" }, t("none")));
  };
  filter.addEventListener("change", () => refreshAudit().catch((e) => problem(e.message)));
  await Promise.all([mayPeople ? refreshAccounts() : null, mayAudit ? refreshAudit() : null]);
}

function newAccount(submit) {
  const username = h("input", { name: "new-username", placeholder: t("username"), required: true, size: 14 });
  const role = h("select", { name: "new-role" }, ROLES.map((r) => h("option", { value: r }, r)));
  const password = h("input", { name: "new-password", type: "password", placeholder: t("password"), minlength: 10, required: true, autocomplete: "new-password" });
  return h("form", { id: "new-account", class: "inline", onsubmit: (e) => {
    e.preventDefault(); submit({ username: username.value.trim(), role: role.value, password: password.value });
  } }, username, role, password, h("button", { class: "action", type: "submit" }, t("add_account")));
}
