// kern web UI: plain JavaScript, no build step. Every piece of data reaches the page through
// textContent / text nodes (the el() helper), never through HTML parsing.
"use strict";

const API = new URL("../v1/", document.baseURI);
const TOKEN_KEY = "kern.token";

const VIEWS = [
  { id: "profile", label: "Profile", store: "user_profile" },
  { id: "memories", label: "Memories", store: "user_memory" },
  { id: "sessions", label: "Sessions", store: "session_context" },
  { id: "entities", label: "Entities", store: "entity_memory" },
  { id: "learnings", label: "Learnings", store: "learned_knowledge" },
  { id: "decisions", label: "Decisions", store: "decision_log" },
  { id: "proposals", label: "Proposals", store: null },
  { id: "jobs", label: "Jobs", store: null },
];

/** A store's name as the views call it ("user_memory" → "Memories"). */
function storeLabel(store) {
  const view = VIEWS.find((v) => v.store === store);
  return view ? view.label : store.replace(/_/g, " ");
}

const state = { me: null, user: null, stores: {}, view: "memories", session: null, failedJobs: 0 };

// ------------------------------------------------------------------ helpers

function $(id) {
  return document.getElementById(id);
}

/** Build an element; string children become text nodes (never parsed as HTML). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "testid") node.dataset.testid = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function notice(message, kind) {
  const box = $("notice");
  box.textContent = message || "";
  box.className = kind || "";
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

async function api(path, options) {
  const opts = options || {};
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(new URL(path, API), {
    method: opts.method || "GET",
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (_) { /* not JSON */ }
    const error = new Error(response.status + ": " + detail);
    error.status = response.status;
    throw error;
  }
  return response;
}

async function json(path, options) {
  return (await api(path, options)).json();
}

function userPath(rest) {
  return "users/" + encodeURIComponent(state.user) + "/" + rest;
}

// ------------------------------------------------------------------ sign in

async function connect(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    state.me = await json("me");
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    notice(error.status === 401 ? "That token was refused." : String(error.message), "error");
    return;
  }
  const stores = await json("stores");
  state.stores = Object.fromEntries(stores.map((s) => [s.name, s]));
  $("login").hidden = true;
  $("session-bar").hidden = false;
  $("app").hidden = false;
  $("whoami").textContent =
    state.me.role === "admin" ? "admin" : "signed in as " + state.me.user_id;
  await fillUsers();
  renderTabs();
  notice("");
}

function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
}

async function fillUsers() {
  const select = $("user-select");
  clear(select);
  let users = [];
  if (state.me.role === "admin") {
    users = (await json("users")).map((u) => u.user_id);
    $("other-user").hidden = false;
  } else {
    users = [state.me.user_id];
  }
  for (const id of users) select.append(el("option", { value: id }, id));
  if (users.length) pickUser(users[0]);
  else notice("No users yet: open one by id, or chat to create one.");
}

function pickUser(userId) {
  state.user = userId;
  const select = $("user-select");
  if (![...select.options].some((o) => o.value === userId)) {
    select.append(el("option", { value: userId }, userId));
  }
  select.value = userId;
  state.session = sessionStorage.getItem("kern.session." + userId) || newSessionId();
  showSession();
  clear($("chat-log"));
  resetRecalled();
  $("history").hidden = true;
  show(state.view);
  refreshFailedJobs();
}

function resetRecalled() {
  const box = $("recalled");
  clear(box);
  box.append(el("li", { class: "empty" }, "Nothing yet: send a message."));
}

function newSessionId() {
  const id = "ui-" + crypto.randomUUID();
  if (state.user) sessionStorage.setItem("kern.session." + state.user, id);
  return id;
}

function showSession() {
  $("chat-session").textContent = state.session;
}

// ------------------------------------------------------------------ views

function renderTabs() {
  const nav = $("tabs");
  clear(nav);
  for (const view of VIEWS) {
    if (view.store && !state.stores[view.store]) continue;
    nav.append(
      el(
        "button",
        {
          type: "button",
          class: view.id === state.view ? "tab active" : "tab",
          testid: "tab-" + view.id,
          onclick: () => show(view.id),
        },
        view.label,
        view.id === "jobs" && state.failedJobs ? el("span", { class: "count", testid: "failed-jobs" }, state.failedJobs + " failed") : null,
      ),
    );
  }
}

/** How many of the user's extraction jobs failed, shown on the Jobs tab: a turn that taught
 * nothing should be visible without opening the view. */
async function refreshFailedJobs() {
  if (!state.user) return;
  try {
    const failed = await json(userPath("jobs?status=failed&limit=500"));
    state.failedJobs = failed.length;
  } catch (_) {
    state.failedJobs = 0; // the views report errors; the badge is a hint
  }
  renderTabs();
}

async function show(viewId) {
  state.view = viewId;
  $("history").hidden = true;
  renderTabs();
  const view = $("view");
  clear(view);
  if (!state.user) return;
  try {
    if (viewId === "profile") await showProfile(view);
    else if (viewId === "sessions") await showSessions(view);
    else if (viewId === "proposals") await showProposals(view);
    else if (viewId === "jobs") await showJobs(view);
    else if (viewId === "search") await showSearch(view);
    else await showStore(view, VIEWS.find((v) => v.id === viewId));
  } catch (error) {
    view.append(el("p", { class: "error" }, String(error.message)));
  }
}

function fields(data) {
  const list = el("dl", { class: "fields" });
  for (const [key, value] of Object.entries(data || {})) {
    if (value === null || value === undefined || (Array.isArray(value) && !value.length)) continue;
    list.append(el("dt", {}, key));
    list.append(el("dd", {}, Array.isArray(value) ? value.join("; ") : typeof value === "object" ? JSON.stringify(value) : String(value)));
  }
  return list;
}

function itemCard(item, actions) {
  // A one-field item (a memory) is its text: the field list would only repeat it.
  const shown = Object.values(item.data || {}).filter((v) => v !== null && !(Array.isArray(v) && !v.length));
  return el(
    "li",
    { class: "item status-" + item.status, testid: "item", "data-id": item.id },
    el("div", { class: "item-text" }, item.content || "(empty)"),
    shown.length > 1 ? fields(item.data) : null,
    el(
      "div",
      { class: "meta" },
      el("span", { class: "badge" }, item.kind),
      el("span", { class: "badge" }, item.status),
      " v" + item.version + " · " + when(item.created_at) + (item.user_id ? " · by " + item.user_id : ""),
    ),
    el("div", { class: "actions" }, actions || []),
  );
}

/** Run a change, report a failure in the notice, then refresh the view. */
async function act(change, refresh) {
  try {
    await change();
  } catch (error) {
    notice(String(error.message), "error");
  }
  await refresh();
}

/** A button that asks first, in the page: "Delete" → "Delete this item? [Yes, delete] [Cancel]". */
function confirmButton(label, question, change, refresh) {
  const box = el("span", { class: "confirm" });
  const ask = () => {
    clear(box);
    box.append(
      el("span", { class: "question" }, question + " "),
      el("button", { type: "button", class: "danger", testid: "confirm-yes", onclick: () => act(change, refresh) }, "Yes, " + label.toLowerCase()),
      el("button", { type: "button", class: "secondary", testid: "confirm-no", onclick: idle }, "Cancel"),
    );
    box.querySelector("[data-testid=confirm-no]").focus();
  };
  const idle = () => {
    clear(box);
    box.append(el("button", { type: "button", class: "danger", testid: label.toLowerCase(), onclick: ask }, label));
  };
  idle();
  return box;
}

function historyButton(store, item) {
  return el("button", { type: "button", testid: "history-button", onclick: () => showHistory(store, item) }, "History");
}

async function showStore(view, spec) {
  const store = state.stores[spec.store];
  const status = el("select", { "aria-label": "status", testid: "status-filter" },
    ["active", "proposed", "deleted", "superseded", "rejected"].map((s) => el("option", { value: s }, s)));
  const kind = el("select", { "aria-label": "kind", testid: "kind-filter" },
    el("option", { value: "" }, "all kinds"), store.kinds.map((k) => el("option", { value: k }, k)));
  const list = el("ol", { class: "items", testid: "items" });
  const more = el("p", { class: "meta" });
  view.append(el("h2", {}, spec.label), el("div", { class: "filters" }, status, store.kinds.length > 1 ? kind : null), list, more);
  if (store.shared) view.insertBefore(el("p", { class: "meta" }, "Shared between users (namespace " + store.namespace + ")."), list);
  if (spec.store === "user_memory" && store.writable) view.append(addMemoryForm());

  async function load() {
    const params = new URLSearchParams({ status: status.value, limit: "100" });
    if (kind.value) params.set("kind", kind.value);
    const page = await json(userPath("stores/" + spec.store + "/items?" + params));
    clear(list);
    for (const item of page.items) {
      const actions = [historyButton(spec.store, item)];
      const mayChange = store.writable && (!store.shared || state.me.role === "admin");
      const itemPath = userPath("stores/" + spec.store + "/items/" + encodeURIComponent(item.id));
      if (item.status === "active" && mayChange) {
        actions.push(confirmButton("Delete", "Delete this item?", async () => {
          await api(itemPath, { method: "DELETE" });
          notice("Deleted: " + item.content, "ok");
        }, load));
      } else if (item.status === "deleted" && mayChange) {
        actions.push(el("button", {
          type: "button", testid: "restore",
          onclick: () => act(async () => {
            await api(itemPath + "/restore", { method: "POST" });
            notice("Restored: " + item.content, "ok");
          }, load),
        }, "Restore"));
      }
      list.append(itemCard(item, actions));
    }
    if (!page.items.length) list.append(el("li", { class: "empty" }, "Nothing here."));
    more.textContent = page.total === null ? "" : page.total + " in all";
  }
  status.addEventListener("change", load);
  kind.addEventListener("change", load);
  await load();
}

function addMemoryForm() {
  const input = el("input", { placeholder: "A new memory about this user", "aria-label": "new memory" });
  return el("form", {
    class: "add",
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        await api(userPath("stores/user_memory/items"), { method: "POST", body: { data: { content: input.value } } });
        await show("memories");
      } catch (error) {
        notice(String(error.message), "error");
      }
    },
  }, input, el("button", { type: "submit" }, "Add"));
}

async function showProfile(view) {
  const data = await json(userPath("profile"));
  const byField = Object.fromEntries(data.fields.map((item) => [item.data.field, item]));
  const writable = state.stores.user_profile && state.stores.user_profile.writable;
  const table = el("table", { class: "profile", testid: "profile" });
  for (const spec of data.schema_fields) {
    const value = data.profile[spec.name];
    const item = byField[spec.name];
    const cell = el("td", { class: "value" }, shown(value));
    const row = el("tr", { testid: "profile-field", "data-field": spec.name },
      el("th", {}, spec.label, spec.description ? el("div", { class: "hint" }, spec.description) : null),
      cell,
      el("td", { class: "actions" },
        writable ? el("button", { type: "button", class: "secondary", testid: "edit", onclick: () => editField(cell, spec, value) }, value === null || value === undefined ? "Set" : "Edit") : null,
        item ? historyButton("user_profile", item) : null));
    table.append(row);
  }
  view.append(el("h2", {}, "Profile"), table);
}

function shown(value) {
  if (value === null || value === undefined) return "—";
  if (Array.isArray(value)) return value.join("; ");
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

/** Turn a profile cell into a form: a choice list, a number or a text input by the field's type. */
function editField(cell, spec, value) {
  clear(cell);
  const editButton = cell.parentElement.querySelector("[data-testid=edit]");
  if (editButton) editButton.hidden = true;
  let input;
  if (spec.choices) {
    input = el("select", { "aria-label": spec.label },
      spec.choices.map((c) => el("option", { value: JSON.stringify(c), selected: c === value ? "selected" : null }, String(c))));
  } else if (spec.type === "boolean") {
    input = el("select", { "aria-label": spec.label },
      [true, false].map((c) => el("option", { value: JSON.stringify(c), selected: c === value ? "selected" : null }, c ? "yes" : "no")));
  } else {
    input = el("input", {
      "aria-label": spec.label,
      type: spec.type === "integer" || spec.type === "number" ? "number" : "text",
      placeholder: spec.type === "array" ? "values separated by ;" : spec.description || "",
    });
    input.value = value === null || value === undefined ? "" : shown(value);
  }
  const parse = () => {
    if (input.tagName === "SELECT") return JSON.parse(input.value);
    const text = input.value.trim();
    if (spec.type === "integer" || spec.type === "number") return Number(text);
    if (spec.type === "array") return text.split(";").map((v) => v.trim()).filter(Boolean);
    return text;
  };
  const form = el("form", {
    class: "edit", testid: "edit-form",
    onsubmit: (event) => {
      event.preventDefault();
      act(async () => {
        await api(userPath("profile"), { method: "PATCH", body: { [spec.name]: parse() } });
        notice("Saved: " + spec.label, "ok");
      }, () => show("profile"));
    },
  }, input, el("button", { type: "submit" }, "Save"),
    el("button", { type: "button", class: "secondary", onclick: () => show("profile") }, "Cancel"));
  cell.append(form);
  input.focus();
}

async function showSessions(view) {
  const [sessions, contexts] = await Promise.all([
    json(userPath("sessions")),
    state.stores.session_context ? json(userPath("stores/session_context/items?limit=100")) : { items: [] },
  ]);
  const bySession = Object.fromEntries(contexts.items.map((item) => [item.session_id, item]));
  const list = el("ol", { class: "items", testid: "items" });
  for (const session of sessions) {
    const item = bySession[session.session_id];
    const count = session.message_count + (session.message_count === 1 ? " message" : " messages");
    list.append(el("li", { class: "item", testid: "session", "data-id": session.session_id },
      el("div", { class: "item-text", testid: "session-preview" }, session.preview || "(no messages)"),
      item ? fields(item.data) : null,
      el("div", { class: "meta" },
        el("span", { class: "badge", testid: "message-count" }, count),
        "last active " + when(session.updated_at) + " · ", el("code", {}, session.session_id)),
      el("div", { class: "actions" },
        el("button", { type: "button", onclick: () => openSession(session.session_id) }, "Open in chat"),
        item ? historyButton("session_context", item) : null)));
  }
  if (!sessions.length) list.append(el("li", { class: "empty" }, "No sessions yet."));
  view.append(el("h2", {}, "Sessions"), list);
}

async function showProposals(view) {
  const proposals = await json(userPath("proposals"));
  const list = el("ol", { class: "items", testid: "proposals" });
  for (const item of proposals) {
    const decide = (verdict) => async () => {
      try {
        await api("proposals/" + encodeURIComponent(item.id) + "/" + verdict, { method: "POST" });
        notice((verdict === "approve" ? "Approved: " : "Rejected: ") + item.content, "ok");
      } catch (error) {
        notice(String(error.message), "error");
      }
      await show("proposals");
    };
    list.append(itemCard(item, [
      el("span", { class: "badge" }, item.store),
      el("button", { type: "button", testid: "approve", onclick: decide("approve") }, "Approve"),
      el("button", { type: "button", class: "danger", testid: "reject", onclick: decide("reject") }, "Reject"),
    ]));
  }
  if (!proposals.length) list.append(el("li", { class: "empty" }, "No pending proposals."));
  view.append(el("h2", {}, "Proposals"), list);
}

const JOB_STATUSES = ["", "failed", "pending", "running", "done"];

async function showJobs(view) {
  const status = el("select", { "aria-label": "status", testid: "job-status-filter" },
    JOB_STATUSES.map((s) => el("option", { value: s }, s || "all statuses")));
  const everyone = state.me.role === "admin"
    ? el("label", { class: "meta" }, el("input", { type: "checkbox", testid: "all-users" }), " every user")
    : null;
  const list = el("ol", { class: "items", testid: "jobs" });
  view.append(el("h2", {}, "Jobs"),
    el("p", { class: "meta" }, "Each turn is learned from by an extraction job. A failed job learned nothing: fix the cause (the model server, a setting), then retry it."),
    el("div", { class: "filters" }, status, everyone), list);

  let timer = null;
  async function load() {
    const params = new URLSearchParams({ limit: "100" });
    if (status.value) params.set("status", status.value);
    const all = everyone && everyone.querySelector("input").checked;
    const jobs = await json((all ? "jobs?" : userPath("jobs?")) + params);
    clear(list);
    for (const job of jobs) {
      const actions = [];
      if (job.status === "failed") {
        actions.push(el("button", {
          type: "button", testid: "retry",
          onclick: () => act(async () => {
            await api("jobs/" + encodeURIComponent(job.id) + "/retry", { method: "POST" });
            notice("Queued again: the job for “" + (job.turn || job.id) + "”", "ok");
          }, load),
        }, "Retry"));
      }
      list.append(el("li", { class: "item job status-" + job.status, testid: "job", "data-id": job.id, "data-status": job.status },
        el("div", { class: "item-text" }, job.turn ? "“" + job.turn + "”" : "(no message)"),
        job.error ? el("div", { class: job.status === "failed" ? "error job-error" : "meta job-error", testid: "job-error" },
          (job.status === "failed" ? "Failed: " : "An earlier attempt failed: ") + job.error) : null,
        el("div", { class: "meta" },
          el("span", { class: "badge status " + job.status, testid: "job-status" }, job.status),
          "attempt " + job.attempts + " of " + job.max_attempts + " · " + when(job.created_at) +
            (all && job.user_id ? " · user " + job.user_id : "") +
            (job.session_id ? " · session " + job.session_id : "")),
        actions.length ? el("div", { class: "actions" }, actions) : null));
    }
    if (!jobs.length) list.append(el("li", { class: "empty" }, "No jobs" + (status.value ? " " + status.value : "") + "."));
    // Pending or running jobs finish on their own: look again shortly while this view is open.
    if (!all && !status.value) {
      state.failedJobs = jobs.filter((j) => j.status === "failed").length;
      renderTabs();
    }
    clearTimeout(timer);
    if (jobs.some((j) => j.status === "pending" || j.status === "running")) {
      timer = setTimeout(() => { if (list.isConnected) load().catch(() => {}); }, 1500);
    }
  }
  status.addEventListener("change", load);
  if (everyone) everyone.querySelector("input").addEventListener("change", load);
  await load();
}

async function showSearch(view) {
  const q = $("search-q").value.trim();
  view.append(el("h2", {}, "Search: " + q));
  if (!q) return;
  const found = await json(userPath("search?" + new URLSearchParams({ q })));
  let any = false;
  for (const [store, items] of Object.entries(found.results)) {
    if (!items.length) continue;
    any = true;
    view.append(el("h3", {}, store),
      el("ol", { class: "items", testid: "search-results" }, items.map((item) => itemCard(item, [historyButton(store, item)]))));
  }
  if (!any) view.append(el("p", { class: "empty" }, "No match."));
}

async function showHistory(store, item) {
  const events = await json(userPath("stores/" + store + "/items/" + encodeURIComponent(item.id) + "/history"));
  $("history-title").textContent = "History of " + (item.content || item.id);
  const list = $("history-list");
  clear(list);
  for (const event of events) {
    const before = event.before ? event.before.text + " [" + event.before.status + "]" : null;
    const after = event.after ? event.after.text + " [" + event.after.status + "]" : null;
    list.append(el("li", { testid: "history-event" },
      el("strong", {}, event.action),
      " by " + (event.actor || "?") + " · " + when(event.created_at) + (event.run_id ? " · run " + event.run_id : ""),
      before !== null ? el("div", { class: "before" }, "before: " + before) : null,
      after !== null ? el("div", { class: "after" }, "after: " + after) : null));
  }
  $("history").hidden = false;
}

// ------------------------------------------------------------------ chat

async function openSession(sessionId) {
  state.session = sessionId;
  sessionStorage.setItem("kern.session." + state.user, sessionId);
  showSession();
  const log = $("chat-log");
  clear(log);
  const messages = await json(userPath("sessions/" + encodeURIComponent(sessionId) + "/messages"));
  for (const m of messages) {
    if ((m.role === "user" || m.role === "assistant") && m.content) {
      log.append(el("li", { class: m.role }, m.content));
    }
  }
}

/** Parse a text/event-stream body: calls onEvent(name, data) per event. */
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

async function send(event) {
  event.preventDefault();
  const input = $("chat-input");
  const message = input.value.trim();
  if (!message || !state.user) return;
  input.value = "";
  const log = $("chat-log");
  log.append(el("li", { class: "user" }, message));
  const answer = el("li", { class: "assistant pending", testid: "answer" });
  log.append(answer);
  $("chat-send").disabled = true;
  try {
    const response = await api(userPath("runs"), {
      method: "POST",
      body: { message, session_id: state.session, stream: true },
    });
    await readEvents(response, (name, data) => {
      if (name === "content_delta") answer.append(data.text);
      else if (name === "tool_call_started") log.insertBefore(el("li", { class: "tool" }, "tool: " + data.name), answer);
      else if (name === "run_completed") {
        answer.textContent = data.content || "";
        showRecalled(data.recalled_items || []);
        refreshFailedJobs();
      } else if (name === "error") {
        answer.textContent = "";
        answer.append(el("span", { class: "error" }, "Error: " + data.detail));
      }
    });
  } catch (error) {
    answer.append(el("span", { class: "error" }, String(error.message)));
  } finally {
    answer.classList.remove("pending");
    answer.dataset.done = "true";
    $("chat-send").disabled = false;
  }
}

/** What the answer was based on: each recalled learning, its store, and why it was chosen. */
function showRecalled(items) {
  const box = $("recalled");
  clear(box);
  if (!items.length) {
    box.append(el("li", { class: "empty" }, "Nothing was recalled for this answer."));
    return;
  }
  for (const item of items) {
    box.append(el("li", { testid: "recalled-item", "data-store": item.store },
      el("span", { class: "badge" }, storeLabel(item.store)),
      el("span", { class: "recalled-text" }, item.content),
      el("div", { class: "meta" }, item.reason)));
  }
}

// ------------------------------------------------------------------ wiring

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    connect($("token").value.trim());
    $("token").value = "";
  });
  $("logout").addEventListener("click", logout);
  $("user-select").addEventListener("change", (event) => pickUser(event.target.value));
  $("other-user").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("other-user-id").value.trim();
    if (id) pickUser(id);
  });
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    show("search");
  });
  $("history-close").addEventListener("click", () => { $("history").hidden = true; });
  $("new-session").addEventListener("click", () => {
    state.session = newSessionId();
    showSession();
    clear($("chat-log"));
  });
  $("chat-form").addEventListener("submit", send);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) connect(saved);
});
