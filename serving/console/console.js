// TicketOps agent console: plain JavaScript against the public API (no build step, no libraries).
"use strict";

const KEY = "ticketops.apiKey";
const $ = (id) => document.getElementById(id);
let model = null; // GET /v1/model
let current = null; // { request_id, topic, urgency } the feedback form answers for

function apiKey() { return sessionStorage.getItem(KEY) || ""; }

async function api(method, path, body) {
  const headers = { "X-API-Key": apiKey() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!response.ok) {
    const error = new Error(describeError(response.status, data));
    error.status = response.status;
    throw error;
  }
  return data;
}

function describeError(status, data) {
  const detail = data && data.detail !== undefined ? data.detail : data;
  if (Array.isArray(detail)) return detail.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
  return `${status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`;
}

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function pct(x) { return typeof x === "number" ? `${(100 * x).toFixed(0)} %` : "–"; }

// Any field of the triage result is shown; the known ones get a friendlier form. Fields the API
// adds later (routing, tier, reasons...) appear without a change here.
const SKIP = new Set(["request_id", "topic_probabilities", "urgency_probabilities"]);
function renderValue(key, value) {
  if (value === null || value === undefined) return el("span", "–");
  if (key === "similar" && Array.isArray(value)) {
    const list = el("ol");
    for (const t of value) {
      list.append(el("li", `${t.ticket_id} (${pct(t.similarity)}) ${t.topic || ""} ${t.resolution ? "— " + t.resolution : ""}`));
    }
    return list;
  }
  if (key === "duplicate_of" && typeof value === "object") {
    return el("strong", `${value.ticket_id} (${pct(value.similarity)}, created ${value.created || "–"})`, { class: "duplicate" });
  }
  if (key.endsWith("_confidence") || key === "similarity") return el("span", pct(value));
  if (Array.isArray(value)) {
    const list = el("ul");
    for (const item of value) list.append(el("li", typeof item === "object" ? JSON.stringify(item) : item));
    return list;
  }
  if (typeof value === "object") {
    const inner = el("dl");
    for (const [k, v] of Object.entries(value)) {
      const dd = el("dd");
      dd.append(renderValue(k, v));
      inner.append(el("dt", k), dd);
    }
    return inner;
  }
  return el("span", value);
}

function renderPrediction(triage) {
  const dl = $("prediction");
  dl.replaceChildren();
  const order = ["topic_name", "topic", "topic_confidence", "urgency", "urgency_confidence", "low_confidence"];
  const keys = [...order.filter((k) => k in triage), ...Object.keys(triage).filter((k) => !order.includes(k) && !SKIP.has(k))];
  for (const key of keys) {
    const dd = el("dd", undefined, { "data-field": key });
    dd.append(renderValue(key, triage[key]));
    dl.append(el("dt", key.replaceAll("_", " ")), dd);
  }
  const dd = el("dd", triage.request_id, { "data-field": "request_id" });
  dl.append(el("dt", "request id"), dd);
}

function selectFeedbackTarget(target) {
  current = target;
  $("true-topic").value = target.topic;
  $("true-urgency").value = target.urgency || "";
  $("feedback-status").textContent = "";
  $("result-panel").hidden = false;
}

async function triageTicket(event) {
  event.preventDefault();
  $("ticket-error").textContent = "";
  const ticket = { text: $("ticket-text").value };
  if ($("ticket-title").value.trim()) ticket.title = $("ticket-title").value;
  if ($("ticket-channel").value.trim()) ticket.channel = $("ticket-channel").value;
  $("triage-button").disabled = true;
  try {
    const answer = await api("POST", "/v1/answer", { ticket });
    renderPrediction(answer.triage);
    $("draft-text").textContent = answer.draft.text;
    $("citations").textContent = answer.draft.citations.join(", ") || "none";
    const passages = $("passages");
    passages.replaceChildren();
    for (const p of answer.passages) passages.append(el("li", `${p.article_id} — ${p.title}${p.heading ? " / " + p.heading : ""} (${p.score.toFixed(2)})`));
    selectFeedbackTarget({ request_id: answer.triage.request_id, topic: answer.triage.topic, urgency: answer.triage.urgency });
    loadQueue();
  } catch (error) {
    $("ticket-error").textContent = error.message;
  } finally {
    $("triage-button").disabled = false;
  }
}

async function sendFeedback(body) {
  $("feedback-status").textContent = "Sending…";
  try {
    const result = await api("POST", "/v1/feedback", { request_id: current.request_id, ...body });
    $("feedback-status").textContent = result.status === "queued" ? "Feedback queued" : "Feedback saved";
    loadQueue();
  } catch (error) {
    $("feedback-status").textContent = `Not saved: ${error.message}`;
  }
}

function accept() {
  const body = { true_topic: current.topic, draft_helpful: $("draft-helpful").checked };
  if (current.urgency) body.true_urgency = current.urgency;
  sendFeedback(body);
}

function correct(event) {
  event.preventDefault();
  const body = { true_topic: $("true-topic").value, draft_helpful: $("draft-helpful").checked };
  if ($("true-urgency").value) body.true_urgency = $("true-urgency").value;
  if ($("comment").value.trim()) body.comment = $("comment").value;
  sendFeedback(body);
}

async function loadQueue() {
  const body = $("queue");
  try {
    const data = await api("GET", "/v1/predictions/recent?limit=50");
    body.replaceChildren();
    for (const p of data.predictions) {
      const row = el("tr", undefined, { "data-request-id": p.request_id });
      // The API's own verdict as logged: a target's tier, or out of scope.
      if (p.needs_review) row.classList.add("low");
      if (p.reviewed) row.classList.add("reviewed");
      const snippet = p.text === null ? `(${p.text_chars} characters, redacted)` : p.text.slice(0, 140);
      row.append(el("td", new Date(p.created_at).toLocaleString()), el("td", p.topic_name || p.topic), el("td", pct(p.topic_confidence)),
        el("td", p.served_urgency || p.urgency || "–"), el("td", p.needs_review ? "needs review" : (p.topic_tier || "–")), el("td", snippet));
      const cell = el("td");
      const review = el("button", p.reviewed ? "Review again" : "Review", { type: "button" });
      review.addEventListener("click", () => {
        renderPrediction({ request_id: p.request_id, topic_name: p.topic_name, topic: p.topic, topic_confidence: p.topic_confidence,
          urgency: p.served_urgency || p.urgency, model_urgency: p.urgency, urgency_confidence: p.urgency_confidence,
          low_confidence: p.low_confidence, needs_review: p.needs_review, out_of_scope: p.out_of_scope,
          escalation_rule: p.escalation_rule, topic_tier: p.topic_tier, routing: p.routing, model_version: p.model_version });
        $("draft-text").textContent = "";
        $("citations").textContent = "–";
        $("passages").replaceChildren();
        if (p.text !== null) $("ticket-text").value = p.text;
        selectFeedbackTarget({ request_id: p.request_id, topic: p.topic, urgency: p.urgency });
      });
      cell.append(review);
      row.append(cell);
      body.append(row);
    }
  } catch (error) {
    const row = el("tr");
    row.append(el("td", `Queue unavailable: ${error.message}`, { colspan: "7" }));
    body.replaceChildren(row);
  }
}

function link(text, href) {
  if (!href) return el("span", text);
  return el("a", text, { href, target: "_blank", rel: "noopener" });
}

// What the memory assets found: incidents (ops.incidents) and KB gaps (ops.kb_gaps), via the API.
async function loadMemory() {
  const incidents = $("incidents"), gaps = $("kb-gaps");
  try {
    const data = await api("GET", "/v1/incidents?hours=72");
    incidents.replaceChildren();
    if (!data.incidents.length) incidents.append(el("li", "No major incident."));
    for (const i of data.incidents) {
      const item = el("li", undefined, { "data-incident-id": i.incident_id });
      item.append(el("strong", `${i.size} tickets: ${i.top_terms.slice(0, 4).join(", ")}`),
        el("span", ` since ${new Date(i.first_seen).toLocaleString()} (${Object.keys(i.departments).length} departments) `),
        link(i.incident_id, i.run_url));
      incidents.append(item);
    }
  } catch (error) {
    incidents.replaceChildren(el("li", `Incidents unavailable: ${error.message}`));
  }
  try {
    const data = await api("GET", "/v1/kb-gaps?limit=10");
    gaps.replaceChildren();
    if (!data.gaps.length) gaps.append(el("li", "No gap found (or kb_gaps has not run)."));
    for (const g of data.gaps) {
      const item = el("li", `${g.title_terms.join(", ")} (${g.size} tickets, trend ${pct(g.trend)}, KB score ${g.mean_kb_score.toFixed(2)})`);
      if (g.examples.length) item.append(el("div", `e.g. ${g.examples[0].text}`, { class: "hint" }));
      if (g.incident_ids.length) item.append(el("div", `part of incident ${g.incident_ids.join(", ")}`, { class: "hint" }));
      gaps.append(item);
    }
  } catch (error) {
    gaps.replaceChildren(el("li", `Gaps unavailable: ${error.message}`));
  }
}

function fillLabels() {
  const topics = $("true-topic"), urgencies = $("true-urgency");
  topics.replaceChildren(...model.topics.map((t) => el("option", (model.topic_names && model.topic_names[t]) || t, { value: t })));
  urgencies.replaceChildren(el("option", "–", { value: "" }), ...model.urgencies.map((u) => el("option", u, { value: u })));
}

async function start() {
  try {
    model = await api("GET", "/v1/model");
  } catch (error) {
    if (error.status === 401) {
      sessionStorage.removeItem(KEY);
      $("key-panel").hidden = false;
      $("app").hidden = true;
      $("key-error").textContent = apiKey() ? "" : (document.body.dataset.triedKey ? "That key was refused." : "");
      return;
    }
    $("key-panel").hidden = true;
    $("app").hidden = false;
    $("model-info").textContent = `Model unavailable: ${error.message}`;
    return;
  }
  $("key-panel").hidden = true;
  $("app").hidden = false;
  $("forget-key").hidden = !apiKey();
  $("model-info").textContent = `${model.name} v${model.version}`;
  fillLabels();
  loadQueue();
  loadMemory();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("api-key").value);
  document.body.dataset.triedKey = "1";
  start();
});
$("forget-key").addEventListener("click", () => { sessionStorage.removeItem(KEY); location.reload(); });
$("ticket-form").addEventListener("submit", triageTicket);
$("accept-button").addEventListener("click", accept);
$("feedback-form").addEventListener("submit", correct);
$("refresh-queue").addEventListener("click", loadQueue);
$("refresh-memory").addEventListener("click", loadMemory);
start();
