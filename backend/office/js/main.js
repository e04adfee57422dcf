// The back office's frame: log in, then route #/fleet, #/cabinet/ID, #/planogram/ID, #/sales,
// #/review, #/stock, #/alerts, #/ads and #/people to their views.
// A view is `render(main, context)` and returns a function that stops its timers.

import * as api from "./api.js";
import { h } from "./dom.js";
import { lang, setLang, t, translateFrame } from "./i18n.js";
import * as fleet from "./fleet.js";
import * as cabinet from "./cabinet.js";
import * as sales from "./sales.js";
import * as review from "./review.js";
import * as stock from "./stock.js";
import * as alerts from "./alerts.js";
import * as planogram from "./planogram.js";
import * as people from "./people.js";
import * as ads from "./ads.js";

const ROUTES = [
  [/^#\/fleet$/, fleet], [/^#\/cabinet\/([^/]+)$/, cabinet], [/^#\/sales$/, sales],
  [/^#\/review$/, review], [/^#\/stock$/, stock], [/^#\/alerts$/, alerts],
  [/^#\/planogram\/([^/]+)$/, planogram], [/^#\/people$/, people], [/^#\/ads$/, ads],
];
let me = null;
let stop = () => {};

export function problem(message) {
  const footer = document.getElementById("problem");
  footer.textContent = message || "";
  footer.hidden = !message;
}

async function show() {
  stop();
  stop = () => {};
  problem("");
  translateFrame();
  const main = document.getElementById("view");
  if (!api.token()) return showLogin(main);
  if (!me) {
    try { me = await api.get("/v1/auth/me"); } catch (e) {
      if (e.status === 401) return showLogin(main);
      return problem(e.status ? e.message : t("network"));
    }
  }
  document.getElementById("top").hidden = false;
  document.getElementById("who").textContent = `${me.username} · ${me.role}`;
  const route = ROUTES.find(([pattern]) => pattern.test(location.hash));
  if (!route) { location.hash = "#/fleet"; return; }
  const params = location.hash.match(route[0]).slice(1).map(decodeURIComponent);
  for (const a of document.querySelectorAll("header nav a"))
    a.classList.toggle("here", location.hash.startsWith(a.getAttribute("href")));
  main.replaceChildren();
  try {
    stop = (await route[1].render(main, { me, params, problem })) || (() => {});
  } catch (e) {
    if (e.status === 401) { me = null; return showLogin(main); }
    problem(e.status ? e.message : t("network"));
  }
}

function showLogin(main) {
  document.getElementById("top").hidden = true;
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: true });
  const pass = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h("form", { class: "card login", id: "login" },
    h("h1", {}, t("title")),
    h("label", { for: "username" }, t("username")), user,
    h("label", { for: "password" }, t("password")), pass,
    h("button", { class: "action", type: "submit" }, t("log_in")),
    h("p", { class: "muted" }, h("a", { href: "#", onclick: (e) => { e.preventDefault(); toggleLanguage(); } }, t("language"))));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api.login(user.value, pass.value);
      me = null;
      if (!location.hash || location.hash === "#/login") location.hash = "#/fleet"; else show();
    } catch (e) {
      problem(e.status === 401 ? t("login_refused") : e.status ? e.message : t("network"));
    }
  });
  main.replaceChildren(form);
  user.focus();
}

function toggleLanguage() {
  setLang(lang() === "zh" ? "en" : "zh");
  show();
}

document.getElementById("language").addEventListener("click", toggleLanguage);
document.getElementById("logout").addEventListener("click", async () => {
  await api.logout().catch(() => {});
  me = null;
  show();
});
window.addEventListener("hashchange", show);
show();
