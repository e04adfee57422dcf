// The ads page: upload ad files (kept once by their sha256), pick a playlist (each ad's
// seconds on screen), and send it to some cabinets or all as set_ads; each cabinet fetches the
// files from this backend and keeps them only when their sha256 matches.

import { get, post, token } from "./api.js";
import { h, when } from "./dom.js";
import { t } from "./i18n.js";

export async function render(main, { me, problem }) {
  const mayEdit = me.commands.includes("set_ads");
  const library = h("div", { id: "ad-library" });
  const cabinets = h("div", { class: "filters", id: "ad-cabinets" });
  const sent = h("p", { id: "ads-sent", class: "muted" });
  const file = h("input", { type: "file", name: "ad", accept: "image/png,image/jpeg,image/webp,video/mp4,video/webm" });
  main.append(h("h1", {}, t("nav_ads")),
    mayEdit ? h("form", { class: "card inline", id: "upload-ad", onsubmit: async (e) => {
      e.preventDefault();
      const chosen = file.files[0];
      if (!chosen) return;
      try {
        const reply = await fetch(`/v1/operator/ads?name=${encodeURIComponent(chosen.name)}`, {
          method: "POST", body: chosen, headers: { Authorization: `Bearer ${token()}`, "Content-Type": chosen.type || "application/octet-stream" } });
        const body = await reply.json().catch(() => ({}));
        if (!reply.ok) throw new Error(body.error || `HTTP ${reply.status}`);
        problem("");
        await refresh();
      } catch (err) { problem(err.message); }
    } }, file, h("button", { class: "action", type: "submit" }, t("upload"))) : null,
    h("section", { class: "card" }, h("h2", {}, t("ad_library")), library),
    mayEdit ? h("section", { class: "card" }, h("h2", {}, t("send_to")), cabinets,
      h("button", { class: "action", type: "button", id: "send-ads", onclick: () => send() }, t("send_playlist")), sent) : null);

  let files = [];
  const refresh = async () => {
    files = (await get("/v1/operator/ads")).ads;
    library.replaceChildren(files.length ? h("table", { id: "ad-table" }, h("tbody", {}, files.map((a) => h("tr", { "data-sha": a.sha256 },
      h("td", {}, mayEdit ? h("input", { type: "checkbox", name: "in-playlist", value: a.sha256 }) : null),
      h("td", {}, a.content_type.startsWith("image/") ? h("img", { class: "thumb", src: a.url_path, alt: a.name }) : a.content_type),
      h("td", {}, h("b", {}, a.name), h("div", { class: "muted" }, `${Math.round(a.bytes / 1024)} KB · ${a.uploaded_by} · ${when(a.uploaded_at)}`)),
      h("td", {}, mayEdit ? h("label", {}, h("input", { type: "number", name: "seconds", min: 1, max: 600, value: 10, size: 3 }), " s") : null)))))
      : h("p", { class: "muted" }, t("none")));
  };
  const send = async () => {
    const playlist = [...library.querySelectorAll("tr")].filter((tr) => tr.querySelector("[name=in-playlist]").checked)
      .map((tr) => ({ url: `${location.origin}/v1/ads/${tr.dataset.sha}`, sha256: tr.dataset.sha,
                      seconds: Number(tr.querySelector("[name=seconds]").value) }));
    const targets = [...cabinets.querySelectorAll("input:checked")].map((i) => i.value);
    try {
      for (const id of targets)
        await post(`/v1/operator/cabinets/${encodeURIComponent(id)}/commands`, { type: "set_ads", args: { playlist }, lifetime_seconds: 86400 });
      sent.textContent = t("playlist_sent", playlist.length, targets.length);
      problem("");
    } catch (err) { problem(err.message); }
  };
  if (mayEdit) {
    const { cabinets: all } = await get("/v1/operator/cabinets");
    cabinets.replaceChildren(...all.map((c) => h("label", {}, h("input", { type: "checkbox", value: c.cabinet_id }), ` ${c.cabinet_id}`)));
  }
  await refresh();
}
