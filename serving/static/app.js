// The related-items page: plain JavaScript over this server's REST API, no build step.
// Search:  GET  /v1/models/{model}/items?q=...&limit=20        (this server's extension)
// Lists:   GET  /v1/models/{model}/metadata                    (TF Serving's REST API): the version's
//          item-to-item signatures (inputs item_id and k, outputs item_ids and scores) are the lists offered:
//          related_items (u_q . z, what a person engages with next) and similar_items (z_q . z, more like this)
// Related: POST /v1/models/{model}:predict                      (TF Serving's REST API, columnar format)
//          {"signature_name": "related_items", "inputs": {"item_id": [id], "k": k}}
//          -> {"outputs": {"item_ids": [[...]], "titles": [[...]], "scores": [[...]]}}
"use strict";

const $ = (id) => document.getElementById(id);
const DEFAULT_SIGNATURE = "related_items"; // schema/versions.RELATED_ITEMS, the pushed versions' serving_default
// what each list answers; a signature without a label here is offered under its own name
const SIGNATURE_LABELS = { related_items: "What comes next", similar_items: "More like this" };
const state = { model: null, trail: [], signature: DEFAULT_SIGNATURE };

function itemToItemSignatures(metadata) {
  // serving_default is an alias of related_items in the pushed versions, so it is not offered twice
  const defs = ((metadata.metadata || {}).signature_def || {}).signature_def || {};
  const known = Object.keys(SIGNATURE_LABELS);
  const rank = (name) => (known.includes(name) ? known.indexOf(name) : known.length);
  return Object.keys(defs)
    .filter((name) => {
      const inputs = defs[name].inputs || {};
      const outputs = defs[name].outputs || {};
      return name !== "serving_default" && "item_id" in inputs && "k" in inputs
        && "item_ids" in outputs && "scores" in outputs;
    })
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

function renderSignatures(names) {
  const box = $("signatures");
  box.querySelectorAll("label").forEach((e) => e.remove());
  if (!names.includes(state.signature)) state.signature = names.includes(DEFAULT_SIGNATURE) ? DEFAULT_SIGNATURE : names[0];
  names.forEach((name) => {
    const label = document.createElement("label");
    label.className = "choice";
    const radio = Object.assign(document.createElement("input"), {
      type: "radio", name: "signature", value: name, checked: name === state.signature,
    });
    radio.addEventListener("change", () => {
      state.signature = name;
      $("signature-name").textContent = name;
      const id = $("current").dataset.itemId;
      if (id) showList(id);
    });
    const text = SIGNATURE_LABELS[name] ? `${SIGNATURE_LABELS[name]} ` : "";
    const code = Object.assign(document.createElement("code"), { textContent: name });
    label.append(radio, ` ${text}`, code);
    box.appendChild(label);
  });
  box.hidden = names.length < 2; // one list: nothing to choose
  $("signature-name").textContent = state.signature;
}

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

async function titleOf(id) {
  // an item named by the URL: its title from the search, where an exact id comes first
  try {
    const data = await api(`/v1/models/${encodeURIComponent(state.model)}/items?q=${encodeURIComponent(id)}&limit=1`);
    return data.item_ids[0] === id ? data.titles[0] : "";
  } catch (err) {
    return "";
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
  await showList(id);
}

async function showList(id) {
  const signature = state.signature;
  const hash = new URLSearchParams({ item: id });
  if (signature !== DEFAULT_SIGNATURE) hash.set("signature", signature);
  history.replaceState(null, "", `#${hash}`);
  const k = Math.max(1, parseInt($("k").value, 10) || 10);
  const ol = $("related");
  ol.setAttribute("aria-busy", "true");
  try {
    const data = await api(`/v1/models/${encodeURIComponent(state.model)}:predict`, {
      signature_name: signature, inputs: { item_id: [id], k },
    });
    // the user walked on or picked another list meanwhile
    if ($("current").dataset.itemId !== id || state.signature !== signature) return;
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
    const asked = new URLSearchParams(location.hash.slice(1));
    if (asked.get("signature")) state.signature = asked.get("signature");
    renderSignatures(itemToItemSignatures(await api(`/v1/models/${encodeURIComponent(state.model)}/metadata`)));
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
  const item = new URLSearchParams(location.hash.slice(1)).get("item");
  if (item) walkTo(item, await titleOf(item), true);
}

main();
