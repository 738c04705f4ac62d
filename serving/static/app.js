// The related-items page: plain JavaScript over this server's REST API, no build step.
// Search:  GET  /v1/models/{model}/items?q=...&limit=20        (this server's extension): ids, titles and each
//          item's attributes {column: text | [text, ...]} (the catalogue's numeric and categorical features)
// Items:   GET  /v1/models/{model}/items?id=...&id=...           the same for given ids (rows of the lists)
// Lists:   GET  /v1/models/{model}/metadata                    (TF Serving's REST API): the version's
//          item-to-item signatures (inputs item_id and k, outputs item_ids and scores) are the lists offered:
//          related_items (u_q . z, what a person engages with next) and similar_items (z . z, more like this);
//          a `recommend` signature (a context tower) turns the history mode on
// Related: POST /v1/models/{model}:predict                      (TF Serving's REST API, columnar format)
//          {"signature_name": "related_items", "inputs": {"item_id": [id], "k": k}}
//          -> {"outputs": {"item_ids": [[...]], "titles": [[...]], "scores": [[...]]}}
// History: POST /v1/models/{model}:predict                      (row format, a ragged history)
//          {"signature_name": "recommend", "instances": [{"history_ids": [...], "k": k}]}
//          -> {"predictions": [{"item_ids": [...], "titles": [...], "scores": [...], "history_used": n}]}
// The URL's hash holds what is shown: #item=ID[&signature=S], or #mode=history&k=K&history=ID&history=ID...;
// each change of the history (or of k in it) is a new browser history entry, so Back shows the previous list.
"use strict";

const $ = (id) => document.getElementById(id);
const DEFAULT_SIGNATURE = "related_items"; // schema/versions.RELATED_ITEMS, the pushed versions' serving_default
const RECOMMEND = "recommend"; // schema/versions.RECOMMEND: history_ids [N, L] and k -> the top k
// what each list answers; a signature without a label here is offered under its own name
const SIGNATURE_LABELS = { related_items: "What comes next", similar_items: "More like this" };
const state = {
  model: null, trail: [], signature: DEFAULT_SIGNATURE, mode: "item", history: [], hasRecommend: false, seq: 0,
  items: new Map(), // id -> {title, attributes}: what the rows show, from the items endpoint
};

function itemToItemSignatures(defs) {
  // serving_default is an alias of related_items in the pushed versions, so it is not offered twice
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

function hasRecommend(defs) {
  const sig = defs[RECOMMEND];
  return Boolean(sig && "history_ids" in (sig.inputs || {}) && "k" in (sig.inputs || {}));
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
  box.dataset.choices = String(names.length);
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

const itemsPath = () => `/v1/models/${encodeURIComponent(state.model)}/items`;

function showError(err) {
  $("error").textContent = err ? String(err.message || err) : "";
  $("error").hidden = !err;
}

function remember(data) {
  data.item_ids.forEach((id, j) => {
    state.items.set(id, { title: data.titles[j], attributes: (data.attributes || [])[j] || {} });
  });
}

async function describe(ids) {
  // titles and attributes of the ids not seen yet; a failure leaves them as bare ids
  const unknown = [...new Set(ids)].filter((id) => !state.items.has(id));
  for (let s = 0; s < unknown.length; s += 200) {
    const q = new URLSearchParams(unknown.slice(s, s + 200).map((id) => ["id", id]));
    try {
      remember(await api(`${itemsPath()}?${q}`));
    } catch (err) {
      return;
    }
  }
}

function attributeText(attributes) {
  // "1995 · Animation, Children's, Comedy": each column's values, in the catalogue's column order
  return Object.values(attributes || {}).map((v) => (Array.isArray(v) ? v.join(", ") : String(v))).join(" · ");
}

function itemLabel(id, title) {
  // the spans of one row: title (or the id), the id when a title is shown, the attributes when there are some
  const info = state.items.get(id) || {};
  title = title || info.title || "";
  const parts = [Object.assign(document.createElement("span"), { className: "title", textContent: title || id })];
  if (title && title !== id) parts.push(Object.assign(document.createElement("span"), { className: "id", textContent: id }));
  const text = attributeText(info.attributes);
  if (text) {
    const a = Object.assign(document.createElement("span"), { className: "attrs", textContent: text });
    a.title = Object.entries(info.attributes).map(([c, v]) => `${c}: ${Array.isArray(v) ? v.join(", ") : v}`).join("\n");
    parts.push(a);
  }
  return parts;
}

function itemButton(id, title, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "item";
  b.dataset.itemId = id;
  b.append(...itemLabel(id, title));
  b.addEventListener("click", onClick);
  return b;
}

function pick(id, title) {
  // a clicked row: the next item of the walk, or one more item of the history
  if (state.mode === "history") addToHistory(id);
  else walkTo(id, title, false);
}

async function search(q) {
  try {
    const data = await api(`${itemsPath()}?q=${encodeURIComponent(q)}&limit=20`);
    if ($("search").value !== q) return; // a newer query is on its way
    remember(data);
    const ul = $("suggestions");
    ul.replaceChildren();
    data.item_ids.forEach((id, j) => {
      const li = document.createElement("li");
      li.appendChild(itemButton(id, data.titles[j], () => {
        if (state.mode === "history") addToHistory(id);
        else walkTo(id, data.titles[j], true);
      }));
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
  if (state.mode !== "item") return;
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
  $("current-attrs").textContent = attributeText((state.items.get(id) || {}).attributes);
  await showList(id);
}

function kValue() {
  return Math.min(100, Math.max(1, parseInt($("k").value, 10) || 10));
}

function renderList(ids, titles, scores, onPick) {
  const ol = $("related");
  ol.replaceChildren();
  ids.forEach((rid, j) => {
    const li = document.createElement("li");
    const s = document.createElement("span");
    s.className = "score";
    s.textContent = typeof scores[j] === "number" ? scores[j].toFixed(3) : String(scores[j]);
    li.append(itemButton(rid, titles[j], () => onPick(rid, titles[j])), s);
    ol.appendChild(li);
  });
}

async function showList(id) {
  const signature = state.signature;
  const hash = new URLSearchParams({ item: id });
  if (signature !== DEFAULT_SIGNATURE) hash.set("signature", signature);
  history.replaceState(null, "", `#${hash}`);
  const k = kValue();
  const seq = ++state.seq;
  const ol = $("related");
  ol.setAttribute("aria-busy", "true");
  try {
    const data = await api(`/v1/models/${encodeURIComponent(state.model)}:predict`, {
      signature_name: signature, inputs: { item_id: [id], k },
    });
    const out = data.outputs;
    await Promise.all([describe(out.item_ids[0]), describe([id])]);
    if (seq !== state.seq) return; // the user walked on, picked another list or mode meanwhile
    showError(null);
    $("current-attrs").textContent = attributeText((state.items.get(id) || {}).attributes);
    renderList(out.item_ids[0], out.titles ? out.titles[0] : [], out.scores[0], pick);
  } catch (err) {
    if (seq !== state.seq) return;
    ol.replaceChildren();
    showError(err);
  } finally {
    if (seq === state.seq) ol.removeAttribute("aria-busy");
  }
}

// ------------------------------------------------------------------------------------------------ history mode
function historyHash() {
  const hash = new URLSearchParams({ mode: "history", k: String(kValue()) });
  state.history.forEach((id) => hash.append("history", id));
  return `#${hash}`;
}

function saveHistory() {
  // a new browser history entry per change, so that Back shows the list before it
  if (location.hash !== historyHash()) history.pushState(null, "", historyHash());
}

function addToHistory(id) {
  if (state.history.includes(id)) return;
  state.history = [...state.history, id];
  saveHistory();
  showHistory();
}

function removeFromHistory(j) {
  state.history = state.history.filter((_, i) => i !== j);
  saveHistory();
  showHistory();
}

function renderHistory() {
  const ol = $("history");
  ol.replaceChildren();
  state.history.forEach((id, j) => {
    const li = document.createElement("li");
    li.dataset.itemId = id;
    const label = Object.assign(document.createElement("span"), { className: "item" });
    label.append(...itemLabel(id));
    const remove = Object.assign(document.createElement("button"), { type: "button", className: "remove", textContent: "×" });
    remove.title = "remove from the history";
    remove.setAttribute("aria-label", `remove ${(state.items.get(id) || {}).title || id} from the history`);
    remove.addEventListener("click", () => removeFromHistory(j));
    li.append(label, remove);
    ol.appendChild(li);
  });
  const n = state.history.length;
  $("current").textContent = n ? `Recommended for a history of ${n} item${n === 1 ? "" : "s"}` : "An empty history";
  $("current").dataset.itemId = "";
  $("current-attrs").textContent = n ? "" : "Add items: click a search result, then a recommendation.";
}

async function showHistory() {
  const seq = ++state.seq;
  const ids = state.history;
  const ol = $("related");
  await describe(ids);
  if (seq !== state.seq) return;
  renderHistory();
  if (!ids.length) {
    ol.replaceChildren();
    showError(null);
    return;
  }
  ol.setAttribute("aria-busy", "true");
  try {
    const data = await api(`/v1/models/${encodeURIComponent(state.model)}:predict`, {
      signature_name: RECOMMEND, instances: [{ history_ids: ids, k: kValue() }],
    });
    const out = data.predictions[0];
    await describe(out.item_ids);
    if (seq !== state.seq) return; // the history, k or the mode changed meanwhile
    showError(null);
    renderList(out.item_ids, out.titles || [], out.scores, pick);
  } catch (err) {
    if (seq !== state.seq) return;
    ol.replaceChildren();
    showError(err);
  } finally {
    if (seq === state.seq) ol.removeAttribute("aria-busy");
  }
}

// ------------------------------------------------------------------------------------------------ modes and the URL
function setMode(mode) {
  state.mode = mode;
  document.querySelectorAll('#mode input[name="mode"]').forEach((r) => { r.checked = r.value === mode; });
  $("history-panel").hidden = mode !== "history";
  $("signatures").hidden = mode !== "item" || $("signatures").dataset.choices < 2; // one list: nothing to choose
  $("signature-name").textContent = mode === "history" ? RECOMMEND : state.signature;
  $("search-hint").textContent = mode === "history" ? "Click an item to add it to the history" : "";
  renderTrail();
}

async function restore() {
  // what the URL's hash names: on load and on Back / Forward
  const asked = new URLSearchParams(location.hash.slice(1));
  if (asked.get("k")) $("k").value = asked.get("k");
  if (asked.get("mode") === "history") {
    if (!state.hasRecommend) {
      showError(`${$("history-off").textContent} (the link asked for it)`);
      setMode("item");
      return;
    }
    setMode("history");
    state.history = asked.getAll("history");
    await showHistory();
    return;
  }
  setMode("item");
  if (asked.get("signature")) state.signature = asked.get("signature");
  document.querySelectorAll("#signatures input").forEach((r) => { r.checked = r.value === state.signature; });
  $("signature-name").textContent = state.signature;
  const item = asked.get("item");
  if (item) {
    await describe([item]);
    walkTo(item, (state.items.get(item) || {}).title || "", true);
  } else {
    state.seq++;
    state.trail = [];
    renderTrail();
    $("current").textContent = "";
    $("current").dataset.itemId = "";
    $("current-attrs").textContent = "";
    $("related").replaceChildren();
  }
}

function switchMode(mode) {
  if (mode === state.mode) return;
  if (mode === "history") {
    setMode("history");
    saveHistory();
    showHistory();
    return;
  }
  const last = state.trail[state.trail.length - 1];
  history.pushState(null, "", last ? `#${new URLSearchParams({ item: last.id })}` : "#");
  restore();
}

function onKChange() {
  if (state.mode === "history") {
    saveHistory();
    showHistory();
  } else if ($("current").dataset.itemId) {
    showList($("current").dataset.itemId);
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
    const metadata = await api(`/v1/models/${encodeURIComponent(state.model)}/metadata`);
    const defs = ((metadata.metadata || {}).signature_def || {}).signature_def || {};
    renderSignatures(itemToItemSignatures(defs));
    state.hasRecommend = hasRecommend(defs);
  } catch (err) {
    $("model-info").textContent = "";
    showError(err);
    return;
  }
  const historyRadio = document.querySelector('#mode input[value="history"]');
  historyRadio.disabled = !state.hasRecommend;
  $("history-off").hidden = state.hasRecommend;
  document.querySelectorAll('#mode input[name="mode"]').forEach((r) => {
    r.addEventListener("change", () => { if (r.checked) switchMode(r.value); });
  });
  $("k").addEventListener("change", onKChange);
  let timer = null;
  $("search").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => search($("search").value), 150);
  });
  $("search").addEventListener("keydown", (ev) => { // Enter picks the first suggestion
    const first = document.querySelector("#suggestions button");
    if (ev.key === "Enter" && first) first.click();
  });
  window.addEventListener("popstate", () => restore());
  search("");
  restore();
}

main();
