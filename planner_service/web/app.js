// hgq web page: chat with uploads, a live graph of the plan from the run's event stream, history.
// No framework and no build step; every user-supplied string goes through textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const TERMINAL = new Set(["succeeded", "failed", "skipped", "cancelled"]);
const FINAL_RUN = new Set(["succeeded", "failed", "cancelled"]);
const state = { key: localStorage.getItem("hgq.key") || "", files: [], turns: new Map(), conversation: newId() };

// One chat is one hgq conversation: later turns see earlier ones and can use their files by name.
function newId() {
  const bytes = new Uint8Array(9);
  crypto.getRandomValues(bytes);
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// --- HTTP --------------------------------------------------------------------------------------
function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  if (state.key) h["Authorization"] = "Bearer " + state.key;
  return h;
}

async function api(path, opts) {
  opts = opts || {};
  const resp = await fetch(path, Object.assign({}, opts, { headers: authHeaders(opts.headers) }));
  if (!resp.ok) {
    let message = resp.status + " " + resp.statusText;
    try {
      const body = await resp.json();
      if (body.error) message = (body.error.field ? body.error.field + ": " : "") + body.error.message;
    } catch (_) { /* not JSON */ }
    if (resp.status === 401) {  // in this page's words, not the API's
      message = state.key ? "This API key is not valid (revoked or mistyped). Create one with `hgq keys create NAME` "
        + "on the server and paste it at the top right." : "This page needs an API key: run `hgq keys create NAME` "
        + "where hgq runs, paste the key at the top right and press Save.";
    }
    const err = new Error(message);
    err.status = resp.status;
    err.retryAfter = resp.headers.get("Retry-After");
    throw err;
  }
  return resp;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function showError(msg) { $("error").textContent = msg || ""; }

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

// --- attachments -------------------------------------------------------------------------------
function addFiles(list) {
  for (const f of list) {
    if (!/^(image|audio)\//.test(f.type) && !/\.(png|jpe?g|gif|webp|bmp|wav|flac|ogg|mp3)$/i.test(f.name)) {
      showError(f.name + ": only images and audio can be attached");
      continue;
    }
    state.files.push(f);
  }
  renderAttachments();
}

function renderAttachments() {
  const ul = $("attachments");
  ul.replaceChildren();
  state.files.forEach((f, i) => {
    const li = el("li");
    li.dataset.name = f.name;
    if (f.type.startsWith("image/")) {
      const img = el("img");
      img.src = URL.createObjectURL(f);
      img.alt = f.name;
      li.append(img);
    }
    li.append(el("span", null, f.name));
    const rm = el("button", null, "×");
    rm.type = "button";
    rm.title = "remove";
    rm.addEventListener("click", () => { state.files.splice(i, 1); renderAttachments(); });
    li.append(rm);
    ul.append(li);
  });
}

function setupDrop() {
  const zone = $("dropzone");
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => {
    e.preventDefault(); zone.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, (e) => {
    e.preventDefault(); zone.classList.remove("over");
  }));
  zone.addEventListener("drop", (e) => {
    e.stopPropagation();  // the window's handler below takes drops elsewhere on the page
    if (e.dataTransfer && e.dataTransfer.files) addFiles(e.dataTransfer.files);
  });
  // a file dropped anywhere else must not navigate away from the page
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files.length) addFiles(e.dataTransfer.files);
  });
  $("pick").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
}

// --- turns ---------------------------------------------------------------------------------------
function newTurn(id, text, localFiles) {
  $("empty").hidden = true;
  const node = $("turn-template").content.firstElementChild.cloneNode(true);
  node.dataset.requestId = id;
  node.querySelector(".msg.user .text").textContent = text;
  const files = node.querySelector(".msg.user .files");
  for (const f of localFiles || []) {
    if (f.type && f.type.startsWith("image/")) {
      const img = el("img");
      img.src = URL.createObjectURL(f);
      img.alt = f.name;
      files.append(img);
    } else if (f.type && f.type.startsWith("audio/")) {
      const audio = el("audio");
      audio.controls = true;
      audio.src = URL.createObjectURL(f);
      audio.title = f.name;
      files.append(audio);
    } else {
      files.append(el("span", "chip", f.name));
    }
  }
  node.querySelector(".rid").textContent = id;
  $("conversation").append(node);
  const turn = { id, el: node, nodes: new Map(), lastId: "", done: false, streamed: false, status: "accepted" };
  node.querySelector(".cancel").addEventListener("click", () => cancel(turn));
  state.turns.set(id, turn);
  setStatus(turn, "accepted");
  node.scrollIntoView({ block: "end" });
  return turn;
}

function setStatus(turn, status) {
  turn.status = status;
  const s = turn.el.querySelector(".status");
  s.textContent = status;
  const state = status.split(/[ ,]/)[0];  // "planning, 2 requests ahead" is in state "planning"
  s.className = "status " + state;
  turn.el.dataset.status = state;
  turn.el.querySelector(".cancel").hidden = FINAL_RUN.has(status);
}

async function cancel(turn) {
  try { await api("/v1/requests/" + turn.id, { method: "DELETE" }); } catch (e) { showError(e.message); }
}

// --- answers: a small, safe markdown subset ----------------------------------------------------------
function inlineMd(text) {  // text is already HTML-escaped
  return text
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>");
}

function renderMarkdown(box, text) {
  const esc = (t) => t.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  const out = [];
  let list = null;
  for (const raw of esc(text).split(/\n/)) {
    const item = raw.match(/^\s*(?:[-*•]|\d+[.)])\s+(.*)$/);
    const head = raw.match(/^#{1,4}\s+(.*)$/);
    if (item) { if (!list) { list = []; } list.push(`<li>${inlineMd(item[1])}</li>`); continue; }
    if (list) { out.push(`<ul>${list.join("")}</ul>`); list = null; }
    if (head) out.push(`<p><strong>${inlineMd(head[1])}</strong></p>`);
    else if (raw.trim()) out.push(`<p>${inlineMd(raw)}</p>`);
  }
  if (list) out.push(`<ul>${list.join("")}</ul>`);
  box.innerHTML = out.join("");
}

// --- the plan graph ---------------------------------------------------------------------------------
function num(x) { const v = parseFloat(x); return Number.isFinite(v) ? v : null; }

function setPlan(turn, plan) {
  for (const t of plan) {
    const old = turn.nodes.get(t.id) || {};
    turn.nodes.set(t.id, Object.assign({ status: "pending" }, old, {
      id: t.id, task: t.task, model: t.model || old.model || null,
      deps: (t.dep || []).filter((d) => d >= 0),
    }));
  }
  drawGraph(turn);
}

function depthOf(nodes) {
  const depth = new Map();
  const visit = (id, seen) => {
    if (depth.has(id)) return depth.get(id);
    const n = nodes.get(id);
    if (!n || seen.has(id)) return 0;
    seen.add(id);
    const d = n.deps.length ? 1 + Math.max(...n.deps.map((x) => visit(x, seen))) : 0;
    depth.set(id, d);
    return d;
  };
  for (const id of nodes.keys()) visit(id, new Set());
  return depth;
}

function elapsed(n) {
  if (n.start == null) return "";
  const end = n.end != null ? n.end : Date.now() / 1000;
  return Math.max(0, end - n.start).toFixed(2) + "s";
}

function drawGraph(turn) {
  const box = turn.el.querySelector(".graph");
  if (!turn.nodes.size) { box.replaceChildren(); return; }
  const W = 200, H = 58, GX = 46, GY = 14, PAD = 6;
  const depth = depthOf(turn.nodes);
  const cols = new Map();
  for (const [id, d] of [...depth.entries()].sort((a, b) => a[0] - b[0])) {
    if (!cols.has(d)) cols.set(d, []);
    cols.get(d).push(id);
  }
  const pos = new Map();
  let rows = 0;
  for (const [d, ids] of cols) {
    ids.forEach((id, i) => pos.set(id, { x: PAD + d * (W + GX), y: PAD + i * (H + GY) }));
    rows = Math.max(rows, ids.length);
  }
  const width = PAD * 2 + cols.size * (W + GX) - GX, height = PAD * 2 + rows * (H + GY) - GY;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const defs = document.createElementNS(SVG, "defs");
  const marker = document.createElementNS(SVG, "marker");
  for (const [k, v] of Object.entries({ id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5",
    markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" })) marker.setAttribute(k, v);
  const tip = document.createElementNS(SVG, "path");
  tip.setAttribute("d", "M 0 0 L 10 5 L 0 10 z");
  tip.setAttribute("fill", "#99a1b3");
  marker.append(tip);
  defs.append(marker);
  svg.append(defs);
  for (const n of turn.nodes.values()) {
    for (const d of n.deps) {
      const a = pos.get(d), b = pos.get(n.id);
      if (!a || !b) continue;
      const path = document.createElementNS(SVG, "path");
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      path.setAttribute("d", `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`);
      path.setAttribute("class", "edge");
      svg.append(path);
    }
  }
  for (const n of turn.nodes.values()) {
    const p = pos.get(n.id);
    const g = document.createElementNS(SVG, "g");
    g.setAttribute("class", "node " + n.status);
    g.setAttribute("data-node", n.id);
    g.setAttribute("data-status", n.status);
    g.setAttribute("transform", `translate(${p.x},${p.y})`);
    g.setAttribute("tabindex", "0");
    g.addEventListener("click", () => showNodeDetails(turn, n.id));
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("width", W);
    rect.setAttribute("height", H);
    rect.setAttribute("rx", 6);
    g.append(rect);
    const lines = [
      [`#${n.id} ${n.task}`, ""],
      [n.model || "model: —", "sub"],
      [n.status + (elapsed(n) ? " · " + elapsed(n) : ""), "sub time"],
    ];
    lines.forEach(([txt, cls], i) => {
      const t = document.createElementNS(SVG, "text");
      t.setAttribute("x", 8);
      t.setAttribute("y", 17 + i * 16);
      if (cls) t.setAttribute("class", cls);
      t.textContent = txt.length > 30 ? txt.slice(0, 29) + "…" : txt;
      const title = document.createElementNS(SVG, "title");
      title.textContent = txt + (n.worker ? `\nworker ${n.worker}` : "") + (n.error ? `\n${n.error}` : "");
      t.append(title);
      g.append(t);
    });
    svg.append(g);
  }
  box.replaceChildren(svg);
}

async function showNodeDetails(turn, id) {  // what a task got, which model ran it, what came out
  const n = turn.nodes.get(id);
  const box = turn.el.querySelector(".node-details");
  if (!n || !box) return;
  if (box.dataset.node === String(id) && !box.hidden) { box.hidden = true; return; }
  let task = {};
  try { task = ((await (await api("/v1/requests/" + turn.id)).json()).tasks || {})[id] || {}; } catch (_) { /* offline */ }
  const plan = (turn.view && turn.view.plan || []).find((t) => t.id === id) || {};
  const rows = [["task", `#${id} ${n.task}`], ["status", n.status + (elapsed(n) ? " · " + elapsed(n) : "")],
    ["model", task.model || n.model || "—"], ["worker", task.worker || n.worker || "—"],
    ["inputs", JSON.stringify(plan.args || {})],
    ["output", task.output ? (task.output.text || (task.output.artifacts || []).map((a) => a.mime).join(", ") || "—") : "—"]];
  if (task.error || n.error) rows.push(["error", task.error || n.error]);
  const dl = el("dl");
  for (const [k, v] of rows) dl.append(el("dt", null, k), el("dd", null, String(v).slice(0, 2000)));
  box.replaceChildren(dl);
  box.dataset.node = String(id);
  box.hidden = false;
}

setInterval(() => {  // running nodes show their time ticking
  for (const turn of state.turns.values()) {
    if (!turn.done && [...turn.nodes.values()].some((n) => n.status === "running")) drawGraph(turn);
  }
}, 250);

// --- events ------------------------------------------------------------------------------------------
function parseBlock(block) {
  const ev = { id: "", event: "message", data: [] };
  for (const line of block.split(/\r?\n/)) {
    if (!line || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "id") ev.id = value;
    else if (field === "event") ev.event = value;
    else if (field === "data") ev.data.push(value);
  }
  if (!ev.data.length) return null;
  try { ev.data = JSON.parse(ev.data.join("\n")); } catch (_) { return null; }
  return ev;
}

function handleEvent(turn, ev) {
  const d = ev.data;
  const type = d.type || ev.event;
  if (type === "planning") setStatus(turn, "planning the tasks…");
  else if (type === "waiting") {
    const what = d.stage === "respond" ? "writing the answer" : d.stage === "select" ? "choosing models" : "planning";
    setStatus(turn, d.ahead ? `${what}, ${d.ahead} request${d.ahead === 1 ? "" : "s"} ahead` : what);
  }
  else if (type === "planned") { setPlan(turn, d.plan || []); setStatus(turn, "running"); }
  else if (type === "task") {
    const n = turn.nodes.get(d.node);
    if (!n) return;
    n.status = d.status;
    if (d.model) n.model = d.model;
    if (d.worker) n.worker = d.worker;
    if (d.error) n.error = d.error;
    if (d.status === "running") { n.start = num(d.ts); n.end = null; }
    else if (TERMINAL.has(d.status) && n.start != null) n.end = num(d.ts);
    drawGraph(turn);
    if (d.status === "succeeded") showTaskOutputs(turn);  // a finished picture shows before the answer
  } else if (type === "answer" && d.delta) {  // token events, when the respond stage streams them
    if (!turn.streamed) setStatus(turn, "writing the answer");
    turn.streamed = true;
    turn.answerText = (turn.answerText || "") + d.delta;
    renderMarkdown(turn.el.querySelector(".answer"), turn.answerText);
  } else if (type === "done") {
    turn.done = true;
    setStatus(turn, d.status || "succeeded");
  }
}

async function follow(turn) {
  let failures = 0;
  while (!turn.done) {
    try {
      const resp = await api(`/v1/requests/${turn.id}/events`,
        { headers: turn.lastId ? { "Last-Event-ID": turn.lastId } : {} });
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let i;
        while ((i = buf.search(/\r?\n\r?\n/)) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(buf.slice(i).match(/^\r?\n\r?\n/)[0].length + i);
          const ev = parseBlock(block);
          if (!ev) continue;
          if (ev.id) turn.lastId = ev.id;
          handleEvent(turn, ev);
        }
        failures = 0;
      }
      if (!turn.done) await sleep(300);  // the stream ended early (replica gone): resume from lastId
    } catch (e) {
      if (e.status === 401 || e.status === 404) { showError(e.message); return; }
      failures += 1;
      if (failures > 30) { showError("lost the event stream of " + turn.id); return; }
      await sleep(Math.min(5000, 250 * failures));
    }
  }
  await showResult(turn);
  loadHistory();
}

async function showResult(turn) {
  let view;
  try { view = await (await api("/v1/requests/" + turn.id)).json(); } catch (e) { showError(e.message); return; }
  applyView(turn, view);
}

function applyView(turn, view) {
  turn.view = view;
  if (!turn.nodes.size && view.plan) setPlan(turn, view.plan);
  for (const [id, t] of Object.entries(view.tasks || {})) {
    const n = turn.nodes.get(Number(id));
    if (!n) continue;
    Object.assign(n, { status: t.status, model: t.model || n.model, worker: t.worker || n.worker,
      error: t.error || n.error, start: t.started_at ?? n.start, end: t.finished_at ?? n.end });
  }
  drawGraph(turn);
  setStatus(turn, view.status);
  if (FINAL_RUN.has(view.status)) {
    turn.done = true;
    renderMarkdown(turn.el.querySelector(".answer"), view.response || view.error || "");
    showArtifacts(turn, view.artifacts || []).then(() => {
      if (turn.el === $("conversation").lastElementChild) turn.el.scrollIntoView({ block: "end" });
    });
  }
}

async function showTaskOutputs(turn) {  // files of the tasks that have finished so far
  let view;
  try { view = await (await api("/v1/requests/" + turn.id)).json(); } catch (_) { return; }
  turn.view = view;
  await showArtifacts(turn, view.artifacts || []);
}

async function showArtifacts(turn, artifacts) {
  const box = turn.el.querySelector(".artifacts");
  turn.shown = turn.shown || new Set();
  for (const a of artifacts) {
    if (turn.shown.has(a.id)) continue;  // already on the page
    turn.shown.add(a.id);
    const fig = el("figure");
    box.append(fig);
    try {
      const blob = await (await api("/v1/artifacts/" + a.id)).blob();
      const url = URL.createObjectURL(blob);
      let media;
      if (a.kind === "image") { media = el("img"); media.alt = `output of task ${a.task}`; }
      else if (a.kind === "video") { media = el("video"); media.controls = true; media.loop = true; media.muted = true; }
      else { media = el("audio"); media.controls = true; }
      media.src = url;
      media.dataset.artifact = a.id;
      fig.append(media, el("figcaption", null, `task ${a.task} · ${a.mime} · ${a.size} bytes`));
    } catch (e) {
      fig.append(el("figcaption", null, `task ${a.task}: ${e.message}`));
    }
  }
}

// --- submit --------------------------------------------------------------------------------------------
async function send(ev) {
  ev.preventDefault();
  showError("");
  const text = $("prompt").value.trim();
  if (!text) { showError("text: write a request"); return; }
  const planText = $("plan").value.trim();
  if (planText) {
    try { JSON.parse(planText); } catch (e) { showError("plan: not valid JSON (" + e.message + ")"); return; }
  }
  const form = new FormData();
  form.append("text", text);
  form.append("conversation_id", state.conversation);
  if (planText) form.append("plan", planText);
  for (const f of state.files) form.append("files", f, f.name);
  $("send").disabled = true;
  try {
    const resp = await api("/v1/requests", { method: "POST", body: form });
    const body = await resp.json();
    const turn = newTurn(body.request_id, text, state.files);
    state.files = [];
    renderAttachments();
    $("prompt").value = "";
    loadHistory();
    follow(turn);
  } catch (e) {
    showError(e.status === 429 ? `${e.message} (retry in ${e.retryAfter || "a few"}s)` : e.message);
  } finally {
    $("send").disabled = false;
  }
}

// --- history ---------------------------------------------------------------------------------------------
async function loadHistory() {
  if (!state.key) return;
  let data;
  try { data = (await (await api("/v1/requests?limit=50")).json()).data; } catch (e) { return; }
  const ul = $("history");
  ul.replaceChildren();
  for (const item of data) {
    if (item.source === "chat") continue;  // runs of the OpenAI-compatible endpoint belong to that chat UI
    const li = el("li");
    li.dataset.requestId = item.request_id;
    const dot = el("span", "dot");
    dot.style.background = `var(--${FINAL_RUN.has(item.status) ? item.status : "running"})`;
    li.append(dot, el("span", "label", item.request));
    li.title = `${item.request_id} · ${item.status}`;
    li.addEventListener("click", () => openRun(item.request_id, item.request, item.conversation_id));
    ul.append(li);
  }
}

async function openRun(id, text, conversation) {
  if (conversation) state.conversation = conversation;  // a follow-up continues that conversation
  const existing = state.turns.get(id);
  if (existing && existing.el.isConnected) { existing.el.scrollIntoView(); return; }
  let view;
  try { view = await (await api("/v1/requests/" + id)).json(); } catch (e) { showError(e.message); return; }
  const turn = newTurn(id, text || view.request, []);
  applyView(turn, view);
  if (!FINAL_RUN.has(view.status)) follow(turn);
}

// --- start ------------------------------------------------------------------------------------------------
async function checkReady() {
  const badge = $("ready");
  try {
    const r = await fetch("/readyz");
    const body = await r.json();
    badge.textContent = body.ready ? "ready" : "not ready";
    badge.className = "ready " + (body.ready ? "ok" : "bad");
    badge.title = JSON.stringify(body.pools);
  } catch (_) {
    badge.textContent = "offline";
    badge.className = "ready bad";
  }
}

function init() {
  $("api-key").value = state.key;
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = $("api-key").value.trim();
    localStorage.setItem("hgq.key", state.key);
    showError("");
    loadHistory();
  });
  $("composer").addEventListener("submit", send);
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
  });
  $("new-chat").addEventListener("click", () => {
    for (const t of state.turns.values()) t.el.remove();
    state.turns.clear();
    state.conversation = newId();
    $("empty").hidden = false;
  });
  for (const b of document.querySelectorAll(".example")) {
    b.addEventListener("click", () => { $("prompt").value = b.dataset.prompt || b.textContent; $("prompt").focus(); });
  }
  setupDrop();
  checkReady();
  setInterval(checkReady, 10000);
  loadHistory();
}

document.addEventListener("DOMContentLoaded", init);
