// The local-ai-router dashboard. Plain ES module, no build step; uPlot is loaded before it.
// Talks only to the router that served it: /ui/api/* and /ui/events (with the API key when the
// router has ROUTER_API_KEYS), /v1/* for the playground, /admin/* with the admin token.

const $ = (selector) => document.querySelector(selector);
const MAX_ROWS = 200;
const PALETTE = ["#2f6fed", "#e8590c", "#12b886", "#ae3ec9", "#fab005", "#e03131", "#1098ad", "#5c940d"];
const secrets = {
  get key() { return sessionStorage.getItem("lar.apiKey") || ""; },
  set key(v) { v ? sessionStorage.setItem("lar.apiKey", v) : sessionStorage.removeItem("lar.apiKey"); },
  get admin() { return sessionStorage.getItem("lar.adminToken") || ""; },
  set admin(v) { v ? sessionStorage.setItem("lar.adminToken", v) : sessionStorage.removeItem("lar.adminToken"); },
};
const state = { status: null, rows: [], seen: new Set(), charts: {}, window: "24h", started: false,
  colors: new Map(), notes: new Map(), busy: new Set(), choice: new Map() };

// -- HTTP -----------------------------------------------------------------------------------------

async function call(path, options = {}, { admin = false } = {}) {
  const headers = new Headers(options.headers || {});
  const token = admin ? secrets.admin : secrets.key;
  if (token) headers.set("Authorization", `Bearer ${token}`);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 && !admin) askForKey(secrets.key ? "That API key was refused." : "");
  return response;
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body?.error?.message || body?.message || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

// Server-Sent Events over fetch (EventSource cannot send an Authorization header).
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "event") event = text;
        else if (field === "data") data.push(text);
      }
      if (data.length) onEvent(event, data.join("\n"));
    }
  }
}

// -- small helpers --------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

const ms = (v) => (v === null || v === undefined ? "–" : `${Math.round(v).toLocaleString()} ms`);
const num = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString());

function color(name) {
  if (!state.colors.has(name)) state.colors.set(name, PALETTE[state.colors.size % PALETTE.length]);
  return state.colors.get(name);
}

function say(target, text, kind = "") {
  const node = typeof target === "string" ? $(target) : target;
  node.textContent = text;
  node.className = `message ${kind}`;
}

// -- API key and admin token -----------------------------------------------------------------------

function askForKey(error) {
  const dialog = $("#key-dialog");
  $("#key-button").hidden = false;
  say("#key-error", error || "", error ? "error" : "");
  if (!dialog.open) dialog.showModal();
}

function bindSecrets() {
  $("#key-form").addEventListener("submit", () => {
    secrets.key = $("#key-input").value.trim();
    $("#key-input").value = "";
    start();
  });
  $("#key-button").addEventListener("click", () => askForKey(""));
  $("#admin-button").addEventListener("click", () => {
    $("#admin-input").value = "";
    $("#admin-dialog").showModal();
  });
  $("#admin-form").addEventListener("submit", (event) => {
    const action = event.submitter?.value;
    secrets.admin = action === "ok" ? $("#admin-input").value.trim() : "";
    $("#admin-input").value = "";
    showAdminState();
  });
  showAdminState();
}

function showAdminState() {
  $("#admin-button").textContent = secrets.admin ? "Admin token ✓" : "Admin token";
}

// -- status, backends, gaming mode ------------------------------------------------------------------

async function refreshStatus() {
  let response;
  try {
    response = await call("/ui/api/status");
  } catch {
    return false;
  }
  if (!response.ok) return false;
  state.status = await response.json();
  renderGaming(state.status.gaming_mode);
  renderBackends(state.status.backends);
  renderBackendFilter(state.status.backends);
  return true;
}

function renderGaming(enabled) {
  const badge = $("#gaming-state");
  badge.textContent = enabled ? "ON" : "OFF";
  badge.dataset.on = String(enabled);
  $("#gaming-toggle").checked = enabled;
}

function backendCard(b) {
  const health = !b.healthy ? ["down", "Down"] : b.gated ? ["gated", "Gated (force-big only)"] : ["up", "Available"];
  const rows = [["URL", b.url], ["Latency", ms(b.latency_ms)], ["Context", b.context_window ? num(b.context_window) + " tokens" : "–"]];
  const agentModels = b.agent?.models || [];
  const models = el("ul", { class: "models" });
  if (agentModels.length) {
    for (const m of agentModels) {
      models.append(el("li", {}, el("span", { class: "mono", text: m.id }),
        el("span", { class: `state ${m.state || ""}`, text: m.state || "?" })));
    }
  } else {
    for (const m of b.models) {
      models.append(el("li", {}, el("span", { class: "mono", text: m.id }),
        m.max_model_len ? el("span", { class: "state", text: `${num(m.max_model_len)} ctx` }) : null));
    }
  }
  if (!models.children.length) models.append(el("li", { text: "none reported" }));
  const dl = el("dl");
  for (const [k, v] of rows) dl.append(el("dt", { text: k }), el("dd", { text: v }));
  dl.append(el("dt", { text: "Models" }), el("dd", {}, models));
  const gpu = b.agent?.gpu;
  if (gpu) {
    const used = gpu.memory_used_mb, total = gpu.memory_total_mb;
    const pct = total ? Math.round((100 * used) / total) : 0;
    dl.append(el("dt", { text: "GPU" }), el("dd", { text: gpu.name || "GPU" }));
    dl.append(el("dt", { text: "Memory" }), el("dd", {},
      `${num(used)} / ${num(total)} MiB`,
      el("div", { class: "meter", role: "meter", "aria-label": `${b.name} GPU memory used`,
        "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(pct) },
      el("span", { style: `width:${pct}%` }))));
    dl.append(el("dt", { text: "Utilisation" }), el("dd", { text: `${gpu.utilization_percent ?? "–"} %` }));
  }
  if (b.last_error) dl.append(el("dt", { text: "Last error" }), el("dd", { text: b.last_error }));
  const title = b.label && b.label !== b.name ? `${b.label} (${b.name})` : b.name;
  const card = el("article", { class: "card backend", "data-backend": b.name, "aria-label": `Backend ${b.name}` },
    el("h3", {}, title, el("span", { class: `badge ${health[0]}`, "data-health": health[0], text: health[1] })), dl);
  if (b.gaming) card.append(gamingSwitch(b));
  if (b.agent) card.append(agentActions(b, agentModels));
  return card;
}

// Backend cards are rebuilt on every status refresh: messages, pending actions, the chosen
// model and the keyboard focus live in `state` (keyed per control) and are put back.
function note(key) {
  const saved = state.notes.get(key);
  return el("p", { class: `message ${saved?.kind || ""}`, role: "status", "data-note": key, text: saved?.text || "" });
}

function tell(key, text, kind = "") {
  state.notes.set(key, { text, kind });
  const node = document.querySelector(`[data-note="${CSS.escape(key)}"]`);
  if (node) say(node, text, kind);
}

function gamingSwitch(b) {
  const key = `${b.name}:gaming`;
  const on = Boolean(state.status?.gaming?.[b.name]);
  const input = el("input", { type: "checkbox", role: "switch", checked: on, "data-key": key });
  input.addEventListener("change", () => setGaming(input.checked, b.name, key, () => { input.checked = !input.checked; }));
  return el("div", {}, el("label", { class: "switch" }, input, `Gaming mode on ${b.name}`), note(key));
}

function agentActions(b, models) {
  const key = `${b.name}:agent`;
  const busy = state.busy.has(key);
  const select = el("select", { "aria-label": `Model to load on ${b.name}`, "data-key": `${b.name}:model` });
  for (const m of models) select.append(el("option", { value: m.id, text: m.id }));
  if (models.some((m) => m.id === state.choice.get(b.name))) select.value = state.choice.get(b.name);
  select.addEventListener("change", () => state.choice.set(b.name, select.value));
  const load = el("button", { type: "button", text: "Load", disabled: busy, "data-key": `${b.name}:load` });
  const stop = el("button", { type: "button", class: "ghost", text: "Stop all", disabled: busy, "data-key": `${b.name}:stop` });
  load.addEventListener("click", () => adminAction(key,
    `/admin/backends/${encodeURIComponent(b.name)}/load`, { model: select.value }, `Loading ${select.value}…`));
  stop.addEventListener("click", () => adminAction(key,
    `/admin/backends/${encodeURIComponent(b.name)}/stop`, {}, "Stopping…"));
  return el("div", {}, el("div", { class: "admin-actions" }, models.length ? select : null,
    models.length ? load : null, stop), note(key));
}

async function adminAction(key, path, body, pending) {
  state.busy.add(key);
  tell(key, pending);
  refreshStatus(); // shows the buttons disabled
  try {
    const response = await call(path, { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body) }, { admin: true });
    if (response.ok) tell(key, (await response.json()).message || "Done.", "ok");
    else tell(key, await errorText(response), "error");
  } catch (error) {
    tell(key, `The router could not be reached: ${error}`, "error");
  } finally {
    state.busy.delete(key);
    refreshStatus();
  }
}

function renderBackends(backends) {
  const box = $("#backends");
  const active = document.activeElement;
  if (active?.tagName === "SELECT" && box.contains(active)) return; // its list may be open
  const focusKey = box.contains(active) ? active.dataset.key : null;
  box.replaceChildren(...backends.map(backendCard));
  if (!backends.length) box.append(el("p", { class: "help", text: "No backend is configured." }));
  if (focusKey) box.querySelector(`[data-key="${CSS.escape(focusKey)}"]`)?.focus();
}

function renderBackendFilter(backends) {
  const select = $("#filter-backend");
  const names = ["", ...backends.map((b) => b.name), "none"];
  const current = [...select.options].map((o) => o.value);
  if (names.join() === current.join()) return;
  const value = select.value;
  select.replaceChildren(...names.map((n) => el("option", { value: n, text: n || "all" })));
  select.value = names.includes(value) ? value : "";
}

async function setGaming(wanted, backend, key, undo) {
  const note = (text, kind = "") => (key ? tell(key, text, kind) : say("#admin-message", text, kind));
  note(wanted ? "Turning gaming mode on…" : "Turning gaming mode off…");
  const body = backend ? { enabled: wanted, backend } : { enabled: wanted };
  try {
    const response = await call("/admin/gaming-mode", { method: "POST",
      headers: { "Content-Type": "application/json", "X-Actor": "dashboard" },
      body: JSON.stringify(body) }, { admin: true });
    if (!response.ok) {
      undo();
      note(`Refused: ${await errorText(response)}`, "error");
      return;
    }
    const result = await response.json();
    if (!backend) renderGaming(result.enabled);
    note(result.message || `Gaming mode is ${wanted ? "on" : "off"}.`, "ok");
  } catch (error) {
    undo();
    note(`The router could not be reached: ${error}`, "error");
  }
  refreshStatus();
}

function toggleGaming(event) {
  const wanted = event.target.checked;
  return setGaming(wanted, null, null, () => renderGaming(!wanted));
}

async function reloadConfig() {
  say("#admin-message", "Reloading the configuration…");
  const response = await call("/admin/reload", { method: "POST" }, { admin: true });
  if (response.ok) say("#admin-message", (await response.json()).message || "Configuration reloaded.", "ok");
  else say("#admin-message", `Reload failed: ${await errorText(response)}`, "error");
  refreshStatus();
}

// -- decision feed ------------------------------------------------------------------------------

const rowKey = (r) => `${r.request_id}|${r.created_at}`;

function addRows(rows, fresh) {
  for (const row of rows) {
    const key = rowKey(row);
    if (state.seen.has(key)) continue;
    state.seen.add(key);
    row._fresh = fresh;
    state.rows.push(row);
  }
  state.rows.sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
  for (const old of state.rows.splice(MAX_ROWS)) state.seen.delete(rowKey(old));
  renderRows();
}

function matches(row) {
  const backend = $("#filter-backend").value, source = $("#filter-source").value;
  const status = $("#filter-status").value;
  if (backend && (row.backend || "none") !== backend) return false;
  if (source && row.source !== source) return false;
  const ok = row.status_code >= 200 && row.status_code < 400;
  if (status === "ok" && !ok) return false;
  if (status === "error" && ok) return false;
  if (status === "fallback" && !(row.fallback_attempts > 0 || row.failures.length)) return false;
  return true;
}

function details(row) {
  const parts = [];
  const add = (label, value) => parts.push(el("div", {}, el("strong", { text: `${label}: ` }), value));
  if (row.candidates.length) add("Candidates", row.candidates.join(" → "));
  for (const [name, why] of Object.entries(row.skipped)) add(`Skipped ${name}`, String(why));
  for (const f of row.failures) add(`Failed ${f.backend}`, String(f.error));
  if (row.error) add("Error", row.error);
  if (row.max_tokens_clamped) add("max_tokens lowered to", String(row.max_tokens_clamped));
  add("Estimated tokens", num(row.estimated_tokens));
  add("Client", row.client || "–");
  add("Endpoint", row.endpoint || "–");
  add("Request", row.request_id);
  const flags = [row.stream && "stream", row.force_big && "force-big", row.gaming_mode && "gaming mode"].filter(Boolean);
  if (flags.length) add("Flags", flags.join(", "));
  const summary = [`${row.candidates.length} candidate${row.candidates.length === 1 ? "" : "s"}`];
  const skipped = Object.keys(row.skipped).length;
  if (skipped) summary.push(`${skipped} skipped`);
  if (row.failures.length) summary.push(`${row.failures.length} failed`);
  return el("details", {}, el("summary", { text: summary.join(", ") }), parts);
}

function renderRows() {
  const body = $("#decisions tbody");
  const visible = state.rows.filter(matches);
  body.replaceChildren(...visible.map((r) => {
    const ok = r.status_code >= 200 && r.status_code < 400;
    const tr = el("tr", { class: `${ok ? "" : "error"} ${r._fresh ? "new" : ""}`.trim(), "data-request-id": r.request_id },
      el("td", { text: new Date(r.created_at).toLocaleTimeString() }),
      el("td", { text: r.source }),
      el("td", { class: "mono", text: r.requested_model || "–" }),
      el("td", { text: r.backend || "none" }),
      el("td", { text: r.reason || "–" }),
      el("td", { class: "status num", text: String(r.status_code) }),
      el("td", { class: "num", text: ms(r.latency_ms) }),
      el("td", { class: "num", text: ms(r.ttft_ms) }),
      el("td", { class: "num", text: `${num(r.prompt_tokens)} / ${num(r.completion_tokens)}` }),
      el("td", {}, details(r)));
    r._fresh = false;
    return tr;
  }));
  $("#feed-empty").hidden = visible.length > 0;
  $("#feed-empty").textContent = state.rows.length ? "No decision matches the filters." : "No decisions yet.";
}

async function loadDecisions() {
  const response = await call("/ui/api/decisions?limit=100");
  if (response.ok) addRows((await response.json()).data, false);
}

function setLive(text, kind) {
  const pill = $("#live");
  pill.textContent = text;
  pill.dataset.state = kind;
}

async function connectFeed() {
  let delay = 1000;
  for (;;) {
    try {
      const response = await call("/ui/events", { headers: { Accept: "text/event-stream" } });
      if (response.status === 401) {
        setLive("API key needed", "down");
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      setLive("live", "live");
      delay = 1000;
      await readEvents(response.body, onEvent);
    } catch {
      // reconnect below
    }
    setLive("reconnecting…", "down");
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

let pending = [];
function onEvent(kind, data) {
  const payload = JSON.parse(data);
  if (kind === "decision") {
    pending.push(payload);
    if (pending.length === 1) queueMicrotask(() => { const rows = pending; pending = []; addRows(rows, true); });
  } else if (kind === "backend") {
    refreshStatus();
  } else if (kind === "gaming") {
    renderGaming(payload.enabled);
    refreshStatus();
  } else if (kind === "hello") {
    loadDecisions();
  }
}

// -- charts -------------------------------------------------------------------------------------

function chartTheme() {
  const css = getComputedStyle(document.documentElement);
  return { fg: css.getPropertyValue("--muted").trim(), line: css.getPropertyValue("--line").trim() };
}

function drawChart(id, xs, series) {
  const box = document.getElementById(id);
  state.charts[id]?.destroy();
  delete state.charts[id];
  box.replaceChildren();
  if (!series.length) {
    box.append(el("p", { class: "help", text: "No requests in this window." }));
    return;
  }
  const theme = chartTheme();
  const axis = { stroke: theme.fg, grid: { stroke: theme.line, width: 1 }, ticks: { stroke: theme.line } };
  const options = {
    width: Math.max(box.clientWidth, 260), height: window.innerWidth < 480 ? 170 : 200,
    scales: { x: { time: true } },
    axes: [axis, { ...axis, size: 56 }],
    series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, dash: s.dash,
      spanGaps: true, points: { show: true, size: 5, fill: s.color } }))],
  };
  state.charts[id] = new uPlot(options, [xs, ...series.map((s) => s.values)], box);
}

async function loadCharts() {
  const response = await call(`/ui/api/stats?window=${state.window}`);
  if (!response.ok) return;
  const data = await response.json();
  const names = Object.keys(data.backends);
  const per = (field, dash) => names.map((n) => ({ label: dash ? `${n} p95` : n, color: color(n),
    values: data.backends[n][field], dash: dash ? [6, 4] : undefined }));
  drawChart("chart-requests", data.buckets, per("requests"));
  drawChart("chart-tokens", data.buckets, per("tokens"));
  drawChart("chart-latency", data.buckets, names.flatMap((n) => [
    { label: `${n} p50`, color: color(n), values: data.backends[n].p50_ms },
    { label: `${n} p95`, color: color(n), values: data.backends[n].p95_ms, dash: [6, 4] }]));
  drawChart("chart-fallbacks", data.buckets, per("fallbacks"));
}

function resizeCharts() {
  for (const [id, chart] of Object.entries(state.charts)) {
    const box = document.getElementById(id);
    chart.setSize({ width: Math.max(box.clientWidth, 260), height: chart.height });
  }
}

// -- playground ---------------------------------------------------------------------------------

async function loadModels() {
  const response = await call("/v1/models");
  if (!response.ok) return;
  const list = $("#model-list");
  list.replaceChildren(...(await response.json()).data.map((m) => el("option", { value: m.id })));
}

function showRoute(route) {
  const box = $("#play-route");
  if (!route.backend) {
    box.replaceChildren(el("p", { class: "message error", text: "No backend could take this prompt." }));
  } else {
    box.replaceChildren(el("p", {}, "Would go to ", el("strong", { "data-testid": "route-backend", text: route.backend }),
      ` (${route.model || "?"}), reason `, el("code", { text: route.reason }),
      `, about ${num(route.estimated_tokens)} tokens.`));
  }
  if (route.candidates.length > 1) box.append(el("p", { class: "help", text: `Fallback order: ${route.candidates.join(" → ")}` }));
  for (const [name, why] of Object.entries(route.skipped || {})) {
    box.append(el("p", { class: "help", text: `Skipped ${name}: ${why}` }));
  }
}

async function play(event) {
  event.preventDefault();
  const answer = $("#play-answer"), button = $("#play-send");
  const prompt = $("#prompt").value.trim();
  if (!prompt) return;
  const headers = { "Content-Type": "application/json" };
  if ($("#play-force").checked) headers["X-Force-Big"] = "true";
  const body = { model: $("#play-model").value.trim() || "auto",
    messages: [{ role: "user", content: prompt }], stream: true, stream_options: { include_usage: true } };
  button.disabled = true;
  answer.textContent = "";
  $("#play-route").replaceChildren();
  try {
    const route = await call("/v1/route", { method: "POST", headers, body: JSON.stringify(body) });
    if (!route.ok) {
      say($("#play-route").appendChild(el("p")), await errorText(route), "error");
      return;
    }
    showRoute(await route.json());
    const response = await call("/v1/chat/completions", { method: "POST", headers, body: JSON.stringify(body) });
    if (!response.ok) {
      say($("#play-route").appendChild(el("p")), await errorText(response), "error");
      return;
    }
    const served = response.headers.get("X-Routed-Backend");
    let usage = null;
    await readEvents(response.body, (_kind, data) => {
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.error) {
        answer.append(el("span", { class: "message error", text: `\n${chunk.error.message}` }));
        return;
      }
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices || []) {
        if (choice.delta?.content) answer.append(choice.delta.content);
      }
    });
    const tail = [`Answered by ${served}`];
    if (usage) tail.push(`${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens`);
    $("#play-route").append(el("p", { class: "help", "data-testid": "play-done", text: `${tail.join(", ")}.` }));
  } catch (error) {
    say($("#play-route").appendChild(el("p")), `The router could not be reached: ${error}`, "error");
  } finally {
    button.disabled = false;
  }
}

// -- start --------------------------------------------------------------------------------------

function bindOnce() {
  bindSecrets();
  $("#gaming-toggle").addEventListener("change", toggleGaming);
  $("#reload-config").addEventListener("click", reloadConfig);
  $("#filters").addEventListener("change", renderRows);
  $("#filters").addEventListener("submit", (e) => e.preventDefault());
  $("#playground").addEventListener("submit", play);
  for (const radio of document.querySelectorAll('input[name="window"]')) {
    radio.addEventListener("change", () => { state.window = radio.value; loadCharts(); });
  }
  new ResizeObserver(resizeCharts).observe($(".charts"));
}

async function start() {
  if (state.started) return;
  if (!(await refreshStatus())) return; // a 401 opened the key dialog; its submit calls start()
  state.started = true;
  if (state.status.api_key_required) $("#key-button").hidden = false;
  connectFeed();
  loadCharts();
  loadModels();
  setInterval(refreshStatus, 10000); // up/down and gaming changes arrive at once on the feed
  setInterval(loadCharts, 60000);
}

bindOnce();
start();
