// The related-items page: plain JavaScript over this server's REST API, no build step.
// Search:  GET  /v1/models/{model}/items?q=...&limit=20        (this server's extension)
// Related: POST /v1/models/{model}:predict                      (TF Serving's REST API, columnar format)
//          {"signature_name": "related_items", "inputs": {"item_id": [id], "k": k}}
//          -> {"outputs": {"item_ids": [[...]], "titles": [[...]], "scores": [[...]]}}
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: null, trail: [] };

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const resp = await fetch(path, init);
  const data = await resp.json().catch(() => ({ error: `HTTP ${resp.status}` }));
  if (!resp.ok) throw new Error(data.error || `HTTP ${resp.status}`);
  return data;
}

function showError(err) {
  $("error").textContent = err ? String(err.message || err) : "";
  $("error").hidden = !err;
}

function itemButton(id, title, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "item";
  b.dataset.itemId = id;
  const t = document.createElement("span");
  t.className = "title";
  t.textContent = title || id;
  b.appendChild(t);
  if (title && title !== id) {
    const i = document.createElement("span");
    i.className = "id";
    i.textContent = id;
    b.appendChild(i);
  }
  b.addEventListener("click", onClick);
  return b;
}

async function search(q) {
  const base = `/v1/models/${encodeURIComponent(state.model)}/items`;
  try {
    const data = await api(`${base}?q=${encodeURIComponent(q)}&limit=20`);
    if ($("search").value !== q) return; // a newer query is on its way
    const ul = $("suggestions");
    ul.replaceChildren();
    data.item_ids.forEach((id, j) => {
      const li = document.createElement("li");
      li.appendChild(itemButton(id, data.titles[j], () => walkTo(id, data.titles[j], true)));
      ul.appendChild(li);
    });
    if (!data.item_ids.length) ul.textContent = "no match";
  } catch (err) {
    showError(err);
  }
}

function renderTrail() {
  const nav = $("trail");
  nav.replaceChildren();
  state.trail.forEach((step, j) => {
    if (j) nav.appendChild(Object.assign(document.createElement("span"), { className: "sep", textContent: "→" }));
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = step.title || step.id;
    b.addEventListener("click", () => {
      state.trail = state.trail.slice(0, j);
      walkTo(step.id, step.title, false);
    });
    nav.appendChild(b);
  });
}

async function walkTo(id, title, fromSearch) {
  if (fromSearch) state.trail = [];
  state.trail.push({ id, title });
  renderTrail();
  $("current").textContent = title || id;
  $("current").dataset.itemId = id;
  history.replaceState(null, "", `#item=${encodeURIComponent(id)}`);
  const k = Math.max(1, parseInt($("k").value, 10) || 10);
  const ol = $("related");
  ol.setAttribute("aria-busy", "true");
  try {
    const data = await api(`/v1/models/${encodeURIComponent(state.model)}:predict`, {
      signature_name: "related_items", inputs: { item_id: [id], k },
    });
    if ($("current").dataset.itemId !== id) return; // the user walked on meanwhile
    showError(null);
    const out = data.outputs;
    const titles = out.titles ? out.titles[0] : [];
    ol.replaceChildren();
    out.item_ids[0].forEach((rid, j) => {
      const li = document.createElement("li");
      const b = itemButton(rid, titles[j], () => walkTo(rid, titles[j], false));
      const s = document.createElement("span");
      s.className = "score";
      s.textContent = out.scores[0][j].toFixed(3);
      li.append(b, s);
      ol.appendChild(li);
    });
  } catch (err) {
    ol.replaceChildren();
    showError(err);
  } finally {
    ol.removeAttribute("aria-busy");
  }
}

async function main() {
  try {
    const wanted = new URLSearchParams(location.search).get("model");
    const models = (await api("/models")).models;
    state.model = wanted || models[0];
    const status = await api(`/v1/models/${encodeURIComponent(state.model)}`);
    const versions = status.model_version_status.map((s) => `${s.version} (${s.state})`).join(", ");
    $("model-info").textContent = `model ${state.model}, version ${versions}`;
    document.querySelectorAll(".model-name").forEach((e) => { e.textContent = state.model; });
  } catch (err) {
    $("model-info").textContent = "";
    showError(err);
    return;
  }
  let timer = null;
  $("search").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => search($("search").value), 150);
  });
  $("search").addEventListener("keydown", (ev) => { // Enter picks the first suggestion
    const first = document.querySelector("#suggestions button");
    if (ev.key === "Enter" && first) first.click();
  });
  search("");
  const m = location.hash.match(/^#item=(.+)$/);
  if (m) walkTo(decodeURIComponent(m[1]), "", true);
}

main();
