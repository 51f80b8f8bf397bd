// taskgrid's web page: a form built from the catalog, the tasks submitted from this
// browser (followed through their event streams), and the system overview. Plain DOM,
// no build step; text from the API is only ever set as text.
"use strict";

const API = "/api/v1";
const STORE_KEY = "taskgrid.tasks.v1";
const MAX_TASKS = 50;      // tasks kept in local storage
const MAX_STREAMS = 4;     // open event streams; a browser allows ~6 connections per host
const POLL_MS = 2000;      // overview, and tasks beyond MAX_STREAMS
const $ = (id) => document.getElementById(id);

// h builds an element: h("p", {class: "x"}, "text", child).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  el.append(...children);
  return el;
}

function announce(text) { $("announcer").textContent = text; }

// ---- the API key (only when the gateway requires one) ----

const KEY_STORE = "taskgrid.key"; // session storage: kept while the tab is open
let apiKey = sessionStorage.getItem(KEY_STORE) || "";

// authed adds the key, when there is one, to a request's headers.
function authed(headers) {
  return apiKey ? {...headers, Authorization: "Bearer " + apiKey} : headers;
}

// api fetches an API path with the key; a 401 asks for a key (again).
async function api(path, init = {}) {
  const r = await fetch(API + path, {...init, headers: authed(init.headers || {})});
  if (r.status === 401) askKey(apiKey ? "The gateway refused this key." : "");
  return r;
}

function askKey(problem) {
  $("key").hidden = false;
  $("key-status").textContent = problem;
  $("f-key").focus();
}

function useKey(e) {
  e.preventDefault();
  apiKey = $("f-key").value.trim();
  sessionStorage.setItem(KEY_STORE, apiKey);
  $("f-key").value = "";
  $("key").hidden = true;
  for (const s of streams.values()) s.close();
  streams.clear();
  start();
}

async function getJSON(path) {
  const r = await api(path, {headers: {Accept: "application/json"}});
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new Error(body?.error?.message || `${r.status} ${r.statusText}`);
  return body;
}

// ---- the form ----

let types = {};            // name → spec from GET /task-types
let idempotencyKey = null; // one per form content: a repeat after a network error is the same task
let autoDirectory = "";    // the directory the page proposed, replaced when the type changes

function fieldId(path) { return "f-p-" + path; }

// fieldHint says what a field allows, from its schema.
function fieldHint(f) {
  const parts = [f.description];
  if (f.min !== undefined && f.max !== undefined) parts.push(`From ${f.min} to ${f.max}.`);
  else if (f.min !== undefined) parts.push(`At least ${f.min}.`);
  if (f.enum) parts.push(`One of: ${f.enum.join(", ")}.`);
  if (f.default !== undefined) parts.push(`Default: ${JSON.stringify(f.default)}.`);
  return parts.join(" ");
}

// fieldElement returns the input (or fieldset, for an object) of field f at path.
function fieldElement(f, path, example) {
  const id = fieldId(path);
  if (f.type === "object") {
    return h("fieldset", {id, "aria-describedby": id + "-err"},
      h("legend", {}, f.name + (f.required ? " (required)" : "")),
      h("p", {class: "hint"}, f.description),
      ...f.fields.map((sub) => fieldElement(sub, path + "." + sub.name, example?.[sub.name])),
      h("p", {id: id + "-err", class: "error", hidden: true}));
  }
  let input;
  if (f.enum || f.type === "boolean") {
    const choices = f.enum || ["true", "false"];
    input = h("select", {},
      h("option", {value: ""}, f.required ? "Choose…" : `Default (${f.default ?? "none"})`),
      ...choices.map((c) => h("option", {value: c}, c)));
  } else if (f.type === "string" && f.max_bytes > 256) {
    input = h("textarea", {rows: 3, spellcheck: "false"});
  } else if (f.type === "integer" || f.type === "number") {
    input = h("input", {type: "number", step: f.type === "integer" ? 1 : "any", min: f.min, max: f.max});
  } else {
    input = h("input", {type: "text", spellcheck: "false"});
  }
  Object.assign(input, {id, name: path});
  input.dataset.type = f.type;
  input.setAttribute("aria-describedby", `${id}-hint ${id}-err`);
  if (example !== undefined) input.value = String(example);
  return h("div", {class: "field"},
    h("label", {for: id}, f.name + (f.required ? " (required)" : "")),
    input,
    h("p", {id: id + "-hint", class: "hint"}, fieldHint(f)),
    h("p", {id: id + "-err", class: "error", hidden: true}));
}

function showType(name) {
  const spec = types[name];
  $("f-task-hint").textContent = spec.description;
  $("payload-fields").replaceChildren(...spec.fields.map((f) => fieldElement(f, f.name, spec.example?.[f.name])));
  const dir = $("f-directory");
  if (dir.value === "" || dir.value === autoDirectory) dir.value = autoDirectory = "web/" + name;
  clearErrors();
}

// readPayload collects the filled fields of fields under path; empty ones are left out.
function readPayload(fields, path, problems) {
  const out = {};
  for (const f of fields) {
    const p = path ? path + "." + f.name : f.name;
    if (f.type === "object") {
      const sub = readPayload(f.fields, p, problems);
      if (Object.keys(sub).length) out[f.name] = sub;
      continue;
    }
    const input = $(fieldId(p));
    if (input.validity.badInput) { problems.push({field: p, message: "must be a number"}); continue; }
    const v = input.value;
    if (v === "") continue;
    if (f.type === "integer" || f.type === "number") out[f.name] = Number(v);
    else if (f.type === "boolean") out[f.name] = v === "true";
    else out[f.name] = v;
  }
  return out;
}

function clearErrors() {
  for (const el of document.querySelectorAll("#submit-form .error")) { el.hidden = true; el.textContent = ""; }
  for (const el of document.querySelectorAll("#submit-form [aria-invalid]")) el.removeAttribute("aria-invalid");
}

// showError puts message next to the field at target ("task", "directory", a payload
// path, or "" for the payload as a whole); one it cannot place goes above the form.
function showError(target, message) {
  let input = target === "task" || target === "directory" ? $("f-" + target) : $(fieldId(target));
  let err = input && $(input.id + "-err");
  if (!err && target !== "" && target !== "payload") {
    message = `${target}: ${message}`;
  }
  if (!err) { input = $("payload"); err = $(target === "" || target === "payload" ? "payload-err" : "form-error"); }
  err.textContent = err.hidden ? message : err.textContent + " " + message;
  err.hidden = false;
  input.setAttribute("aria-invalid", "true");
  return input;
}

// showAPIError places each problem of an error answer next to its field.
function showAPIError(error) {
  const placed = [];
  if (Array.isArray(error.details)) { // invalid_payload: one problem per field
    for (const p of error.details) placed.push(showError(p.field, p.message));
  } else if (error.details?.field) {
    placed.push(showError(error.details.field, error.message));
  }
  const summary = $("form-error");
  summary.textContent = placed.length
    ? `The task was not submitted: ${placed.length === 1 ? "one problem" : placed.length + " problems"}, shown next to the fields.`
    : `The task was not submitted: ${error.message}`;
  summary.hidden = false;
  (placed[0] || summary).focus?.();
}

function newKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

async function submit(ev) {
  ev.preventDefault();
  clearErrors();
  const name = $("f-task").value;
  const problems = [];
  const payload = readPayload(types[name].fields, "", problems);
  if (problems.length) { showAPIError({details: problems}); return; }
  idempotencyKey ||= newKey();
  const button = $("submit-button");
  button.disabled = true;
  $("submit-status").textContent = "Submitting…";
  try {
    const r = await api("/tasks", {
      method: "POST",
      headers: {"Content-Type": "application/json", "Idempotency-Key": idempotencyKey},
      body: JSON.stringify({task: name, payload, directory: $("f-directory").value}),
    });
    const body = await r.json().catch(() => ({error: {message: `${r.status} ${r.statusText}`}}));
    if (!r.ok) {
      $("submit-status").textContent = "";
      showAPIError(body.error || {message: `${r.status} ${r.statusText}`});
      return;
    }
    idempotencyKey = null;
    $("submit-status").textContent = `Submitted ${body.task} task ${body.id}.`;
    addTask({id: body.id, task: body.task, directory: body.directory, status: body.status, progress: 0});
  } catch (e) {
    $("submit-status").textContent = "";
    showAPIError({message: `the gateway could not be reached (${e.message}); submit again to retry.`});
  } finally {
    button.disabled = false;
  }
}

// ---- the tasks of this browser ----

let tasks = [];            // {id, task, directory, status, progress, error}, newest first
const streams = new Map(); // id → EventSource
const terminal = (s) => s === "completed" || s === "failed" || s === "cancelled" || s === "unknown";

function loadTasks() {
  try { tasks = JSON.parse(localStorage.getItem(STORE_KEY)) || []; } catch { tasks = []; }
}
function saveTasks() { localStorage.setItem(STORE_KEY, JSON.stringify(tasks.slice(0, MAX_TASKS))); }

function taskElement(t) {
  const pid = "progress-" + t.id;
  return h("li", {class: "task", id: "task-" + t.id},
    h("h3", {}, h("span", {}, t.task), h("code", {title: t.id}, t.id.slice(0, 8))),
    h("p", {}, "Status: ", h("span", {class: "status"})),
    h("div", {class: "bar"},
      h("label", {for: pid}, "Progress"),
      h("progress", {id: pid, max: 1, value: 0}),
      h("span", {class: "pct", "aria-hidden": "true"})),
    h("p", {class: "hint"}, "Directory: ", h("code", {}, t.directory)),
    h("p", {class: "outcome"}));
}

function render(t) {
  let el = $("task-" + t.id);
  if (!el) {
    el = taskElement(t);
    $("task-list").prepend(el);
  }
  el.dataset.status = t.status;
  el.querySelector(".status").textContent = t.status === "unknown" ? "unknown to the gateway" : t.status;
  const pct = Math.round((t.progress || 0) * 100);
  el.querySelector("progress").value = t.progress || 0;
  el.querySelector("progress").textContent = pct + " %";
  el.querySelector(".pct").textContent = pct + " %";
  const outcome = el.querySelector(".outcome");
  if (t.status === "completed") {
    const link = h("a", {href: `${API}/tasks/${t.id}/result`, class: "result"}, `Result of ${t.task} ${t.id.slice(0, 8)}`);
    link.addEventListener("click", (e) => openResult(e, t));
    outcome.replaceChildren(link);
  } else if (t.status === "failed") {
    outcome.replaceChildren(h("span", {class: "error"}, t.error || "failed"));
  } else if (t.status === "cancelled" || terminal(t.status)) {
    outcome.replaceChildren();
  } else if (!outcome.querySelector("button.cancel")) {
    const b = h("button", {type: "button", class: "cancel"}, `Cancel ${t.task} ${t.id.slice(0, 8)}`);
    b.addEventListener("click", () => cancelTask(t, b));
    outcome.replaceChildren(b);
  }
  $("no-tasks").hidden = tasks.length > 0;
}

// update merges a change into task t, renders it and says a change of status aloud.
function update(t, change) {
  const before = t.status;
  Object.assign(t, change);
  if (terminal(t.status)) {
    streams.get(t.id)?.close();
    streams.delete(t.id);
  }
  render(t);
  if (t.status !== before) {
    announce(`Task ${t.task} ${t.id.slice(0, 8)}: ${t.status}`);
    saveTasks();
    if (terminal(t.status)) watchMore();
  }
}

// cancelTask asks the gateway to cancel task t (DELETE): 200 says cancelled; 409 says
// the task had finished already, with its status.
async function cancelTask(t, button) {
  button.disabled = true;
  try {
    const r = await api(`/tasks/${t.id}`, {method: "DELETE", headers: {Accept: "application/json"}});
    const body = await r.json().catch(() => ({}));
    if (r.ok) {
      update(t, {status: "cancelled"});
    } else if (r.status === 409 && body.error?.details?.status) {
      update(t, {status: body.error.details.status});
    } else {
      button.disabled = false;
      announce(`Task ${t.task} ${t.id.slice(0, 8)} could not be cancelled: ${body.error?.message || r.status}`);
    }
  } catch {
    button.disabled = false;
  }
}

// watch follows task t through its event stream. The stream starts with a status
// snapshot and ends with completed, failed or cancelled; a failed attempt is not an event.
function watch(t) {
  const es = apiKey ? new KeyedEventSource(`/tasks/${t.id}/events`) : new EventSource(`${API}/tasks/${t.id}/events`);
  streams.set(t.id, es);
  const on = (name, f) => es.addEventListener(name, (e) => f(JSON.parse(e.data)));
  on("status", (v) => update(t, {status: v.status, progress: v.progress}));
  on("progress", (v) => update(t, {progress: v.progress}));
  on("completed", () => update(t, {status: "completed", progress: 1}));
  on("failed", (v) => update(t, {status: "failed", error: v.error}));
  on("cancelled", () => update(t, {status: "cancelled"}));
  es.onerror = () => { // the browser reconnects by itself unless the answer was an error (404)
    if (es.readyState === EventSource.CLOSED) update(t, {status: "unknown"});
  };
}

// KeyedEventSource reads an event stream with the API key: EventSource cannot send an
// Authorization header, so this reads the stream with fetch and parses its events (the
// subset the gateway sends: event, data, id; comments are pings). It offers what watch
// uses of EventSource, and reconnects after a network error like EventSource does.
class KeyedEventSource {
  constructor(path) {
    this.path = path;
    this.listeners = {};
    this.readyState = EventSource.CONNECTING;
    this.onerror = null;
    this.abort = new AbortController();
    this.read();
  }
  addEventListener(name, f) { (this.listeners[name] ||= []).push(f); }
  close() { this.readyState = EventSource.CLOSED; this.abort.abort(); }
  async read() {
    try {
      const r = await api(this.path, {headers: {Accept: "text/event-stream"}, signal: this.abort.signal});
      if (!r.ok) { this.close(); this.onerror?.(); return; }
      this.readyState = EventSource.OPEN;
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buf += value;
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let name = "message", data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (data.length) for (const f of this.listeners[name] || []) f({data: data.join("\n")});
        }
      }
    } catch (e) {
      if (this.readyState === EventSource.CLOSED) return;
    }
    if (this.readyState !== EventSource.CLOSED) { // the stream ended: reconnect, as EventSource does
      this.readyState = EventSource.CONNECTING;
      setTimeout(() => this.read(), 1000);
    }
  }
}

// openResult shows a result with the key: a plain link cannot send the header.
async function openResult(e, t) {
  if (!apiKey) return; // the link works by itself
  e.preventDefault();
  const r = await api(`/tasks/${t.id}/result`);
  const blob = new Blob([await r.text()], {type: "application/json"});
  window.open(URL.createObjectURL(blob), "_blank", "noopener");
}

// watchMore opens streams for unfinished tasks, up to MAX_STREAMS.
function watchMore() {
  for (const t of tasks) {
    if (streams.size >= MAX_STREAMS) break;
    if (!terminal(t.status) && !streams.has(t.id)) watch(t);
  }
}

// pollUnwatched reads the unfinished tasks that have no stream (beyond MAX_STREAMS).
async function pollUnwatched() {
  for (const t of tasks.filter((t) => !terminal(t.status) && !streams.has(t.id))) {
    try {
      const v = await getJSON(`/tasks/${t.id}`);
      update(t, {status: v.status, progress: v.progress, error: v.error});
    } catch { /* shown again at the next poll */ }
  }
}

function addTask(t) {
  tasks.unshift(t);
  for (const old of tasks.splice(MAX_TASKS)) $("task-" + old.id)?.remove();
  saveTasks();
  render(t);
  watchMore();
}

function forgetFinished() {
  tasks = tasks.filter((t) => {
    if (terminal(t.status)) $("task-" + t.id)?.remove();
    return !terminal(t.status);
  });
  saveTasks();
  $("no-tasks").hidden = tasks.length > 0;
}

// ---- the overview ----

function renderOverview(o) {
  $("q-high").textContent = o.queue.high;
  $("q-normal").textContent = o.queue.normal;
  $("nodes").replaceChildren(...(o.nodes.length
    ? o.nodes.map((n) => h("tr", {}, h("th", {scope: "row"}, n.node), h("td", {}, n.busy), h("td", {}, n.idle)))
    : [h("tr", {}, h("td", {colspan: 3}, "No worker slot known yet"))]));
  $("f-recovered").textContent = o.failures.recovered;
  $("f-attempts").textContent = o.failures.attempts_failed;
  $("f-failed").textContent = o.failures.failed;
  $("f-cancelled").textContent = o.failures.cancelled;
  renderChart(o.throughput);
  const counted = o.source === "analytics"
    ? `completions and failures since ${new Date(o.since).toLocaleString()}, from the analytics ledger`
    : `analytics unavailable: completions and failures counted by this gateway since ${new Date(o.since).toLocaleString()}`;
  $("overview-status").textContent = `Updated ${new Date(o.at).toLocaleTimeString()}; ${counted}.`;
}

// renderChart draws completions per minute as bars, labelled with their counts.
function renderChart(minutes) {
  const svg = $("chart"), ns = "http://www.w3.org/2000/svg";
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const top = Math.max(1, ...minutes.map((m) => m.completed));
  const width = 200, w = width / minutes.length, base = 86, height = 70;
  const clock = (m) => new Date(m.start).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
  const title = el("title", {id: "chart-title"},
    "Completed per minute: " + minutes.map((m) => `${clock(m)} ${m.completed}`).join(", "));
  const bars = minutes.flatMap((m, i) => {
    const bh = (m.completed / top) * height, x = i * w;
    return [el("rect", {x: x + 2, y: base - bh, width: w - 4, height: bh}),
      el("text", {x: x + w / 2, y: base - bh - 2}, m.completed)];
  });
  svg.replaceChildren(title, el("line", {x1: 0, y1: base, x2: width, y2: base}), ...bars,
    el("text", {x: 0, y: 99, class: "first"}, clock(minutes[0])),
    el("text", {x: width, y: 99, class: "last"}, clock(minutes.at(-1))));
}

async function pollOverview() {
  if (!document.hidden) {
    try {
      renderOverview(await getJSON("/overview"));
    } catch (e) {
      $("overview-status").textContent = `Overview unavailable: ${e.message}`;
    }
    await pollUnwatched();
  }
  setTimeout(pollOverview, POLL_MS);
}

// ---- start ----

let started = false;

async function start() {
  loadTasks();
  for (const t of [...tasks].reverse()) render(t);
  watchMore();
  const form = $("submit-form");
  if (!started) { // listeners and the poll loop once; a new key only reloads the data
    started = true;
    $("forget-finished").addEventListener("click", forgetFinished);
    $("key-form").addEventListener("submit", useKey);
    form.addEventListener("submit", submit);
    form.addEventListener("input", () => { idempotencyKey = null; });
    $("f-task").addEventListener("change", (e) => showType(e.target.value));
    pollOverview();
  }
  try {
    const list = (await getJSON("/task-types")).task_types;
    types = Object.fromEntries(list.map((s) => [s.name, s]));
    $("f-task").replaceChildren(...list.map((s) => h("option", {value: s.name}, s.name)));
    showType(list[0].name);
    form.dataset.ready = "true";
  } catch (e) {
    showAPIError({message: `the task types could not be loaded (${e.message}); reload the page.`});
  }
}

start();
