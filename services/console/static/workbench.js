// The dispatcher's workbench: the manual dispatch queue, the warning and overdue board, search,
// and a case's detail (its timeline, tasks per department, evidence, and any past moment).
import {
  api, boot, categoryName, departmentName, el, formatTime, label, onLanguage, problemText, say, shanghai,
  shortId, state, t, whereName,
} from "./common.js";
import { debounce, Live } from "./live.js";

const QUEUE_CHANGES = new Set(["CaseQueued", "CaseDispatched", "TaskDispatched", "CaseRejected", "CaseMerged", "CaseCancelled"]);
const BOARD_CHANGES = new Set(["DeadlineWarned", "TaskOverdue", "CaseEscalated", "TaskAccepted", "TaskCompleted",
  "TaskReturned", "TaskWithdrawn", "TaskDispatched"]);
const OPEN_TASK = new Set(["dispatched", "accepted"]);
const TERMINAL = new Set(["closed", "rejected", "merged", "cancelled"]);
const STATUSES = ["reported", "awaiting_dispatch", "dispatched", "in_progress", "handled", "verifying", "reopened",
  "closed", "rejected", "merged", "cancelled"];

let chosen = null; // the case in the detail panel
let asOf = null; // the past moment it is shown at (ISO), or null for now
let lastSearch = null;
let shown = null; // the version on screen: a live reload that finds it unchanged leaves the forms be

const cell = (...children) => el("td", {}, ...children);
const caseCode = (id) => el("code", { title: id }, shortId(id));
const time = (iso) => el("time", { datetime: iso || "" }, formatTime(iso));

function emptyRow(table, key) {
  const columns = table.tHead.rows[0].cells.length;
  return el("tr", {}, el("td", { colspan: columns, class: "empty" }, t(key)));
}

function openButton(caseId) {
  return el("button", { type: "button", class: "secondary", dataset: { open: caseId }, onclick: () => showCase(caseId) },
    t("open"), el("span", { class: "skip" }, ` ${shortId(caseId)}`));
}

function fill(table, rows, emptyKey) {
  table.tBodies[0].replaceChildren(...(rows.length ? rows : [emptyRow(table, emptyKey)]));
}

async function loadQueue() {
  const result = await api("/v1/dispatch/queue?page_size=100");
  if (!result.ok) return say(problemText(result), false);
  fill(document.getElementById("queue"), result.data.items.map((q) => el("tr",
    { dataset: { caseId: q.case_id }, class: q.case_id === chosen ? "chosen" : null },
    cell(caseCode(q.case_id)), cell(categoryName(q.category)), cell(whereName(q.grid, q.street)), cell(q.reason),
    cell(time(q.queued_at)), cell(openButton(q.case_id)))), "queue.empty");
}

function flags(task) {
  const badges = [];
  for (const [kind, set] of [["warned", task.warned], ["overdue", task.overdue], ["escalated", task.escalated]]) {
    for (const which of set || []) {
      badges.push(el("span", { class: `badge ${kind}` }, `${t(`flag.${kind}`)}·${t(`kind.${which}`)}`));
    }
  }
  return badges;
}

async function loadBoard() {
  const result = await api("/board");
  if (!result.ok) return say(problemText(result), false);
  fill(document.getElementById("board"), result.data.items.map(({ task, case: brief }) => el("tr",
    { dataset: { taskId: task.id, caseId: brief.id } },
    cell(departmentName(task.department)), cell(caseCode(brief.id), " ", categoryName(brief.category)),
    cell(label("task", task.status)), cell(...flags(task)),
    cell(time(task.status === "dispatched" ? task.accept_by : task.complete_by)), cell(openButton(brief.id)))),
  "board.empty");
}

function options(select, entries, anyKey) {
  const current = select.value;
  select.replaceChildren(el("option", { value: "" }, t(anyKey)),
    ...entries.map(([value, text]) => el("option", { value }, text)));
  select.value = current;
}

function searchOptions() {
  const { catalog } = state;
  options(document.getElementById("s-category"),
    Object.keys(catalog.categories).map((code) => [code, categoryName(code)]), "search.any");
  options(document.getElementById("s-street"), Object.entries(catalog.streets), "search.any");
  options(document.getElementById("s-grid"), Object.keys(catalog.grids).map((g) => [g, g]), "search.any");
  options(document.getElementById("s-status"), STATUSES.map((s) => [s, label("status", s)]), "search.any");
}

async function search(event) {
  event?.preventDefault();
  const form = new FormData(document.getElementById("search"));
  const id = String(form.get("id") || "").trim();
  const table = document.getElementById("results");
  lastSearch = true;
  let items;
  if (id) {
    const result = await api(`/v1/cases/${encodeURIComponent(id)}`);
    items = result.ok ? [{ ...result.data, grid: result.data.location.grid, street: result.data.location.street }] : [];
  } else {
    const query = new URLSearchParams({ page_size: "50" });
    for (const name of ["category", "street", "grid", "status"]) if (form.get(name)) query.set(name, form.get(name));
    const day = String(form.get("date") || ""); // a day of the command centre's calendar
    if (day) {
      query.set("reported_from", day);
      query.set("reported_to", day);
    }
    const result = await api(`/v1/cases?${query}`);
    if (!result.ok) return say(problemText(result), false);
    items = result.data.items;
  }
  fill(table, items.map((c) => el("tr", { dataset: { caseId: c.id } },
    cell(caseCode(c.id)), cell(categoryName(c.category)), cell(whereName(c.grid, c.street)),
    cell(label("status", c.status)), cell(time(c.reported_at)), cell(openButton(c.id)))), "search.empty");
}

// --- the case's detail ----------------------------------------------------------------

function fields(pairs) {
  return el("dl", { class: "fields" }, ...pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .flatMap(([k, v]) => [el("dt", {}, t(k)), el("dd", {}, v)]));
}

function evidenceLinks(list) {
  return (list || []).map((a) => el("div", {},
    el("a", { href: a.url, rel: "noopener noreferrer", target: "_blank" }, a.url),
    el("span", { class: "note" }, ` ${a.media_type}`)));
}

function departmentSelect(id, multiple) {
  return el("select", { id, name: id, multiple, required: true },
    ...Object.keys(state.catalog.departments).map((code) => el("option", { value: code }, departmentName(code))));
}

async function act(path, body, doneKey) {
  const result = await api(path, { method: "POST", body });
  if (!result.ok) return say(problemText(result), false);
  say(t(doneKey));
  await Promise.all([loadQueue(), loadBoard(), showCase(chosen)]);
}

function dispatcherActions(kase) {
  if (TERMINAL.has(kase.status)) return null;
  const forms = [];
  if (kase.status === "awaiting_dispatch") {
    forms.push(el("form", { id: "dispatch-form", onsubmit: (e) => {
      e.preventDefault();
      const departments = [...document.getElementById("dispatch-departments").selectedOptions].map((o) => o.value);
      const priority = document.getElementById("dispatch-priority").value;
      act(`/v1/cases/${kase.id}/dispatch`, priority ? { departments, priority } : { departments }, "dispatch.done");
    } },
    el("label", { for: "dispatch-departments" }, t("dispatch.departments")), departmentSelect("dispatch-departments", true),
    el("label", { for: "dispatch-priority" }, t("dispatch.priority")),
    el("select", { id: "dispatch-priority" }, ...["", "urgent", "high", "normal", "low"].map((p) =>
      el("option", { value: p }, t(p ? `priority.${p}` : "priority.default")))),
    el("div", { class: "actions" }, el("button", { type: "submit", id: "dispatch" }, t("dispatch.submit")))));
  }
  forms.push(el("form", { id: "reject-form", onsubmit: (e) => {
    e.preventDefault();
    act(`/v1/cases/${kase.id}/reject`, { reason: document.getElementById("reject-reason").value }, "reject.done");
  } },
  el("label", { for: "reject-reason" }, t("reject.reason")), el("input", { id: "reject-reason", required: true, maxlength: 500 }),
  el("div", { class: "actions" }, el("button", { type: "submit", class: "danger", id: "reject" }, t("reject.submit")))));
  forms.push(el("form", { id: "merge-form", onsubmit: (e) => {
    e.preventDefault();
    act(`/v1/cases/${kase.id}/merge`, { into: document.getElementById("merge-into").value.trim() }, "merge.done");
  } },
  el("label", { for: "merge-into" }, t("merge.into")), el("input", { id: "merge-into", required: true, autocomplete: "off" }),
  el("div", { class: "actions" }, el("button", { type: "submit", class: "secondary", id: "merge" }, t("merge.submit")))));
  return el("fieldset", {}, el("legend", {}, t("detail.actions")), ...forms);
}

function reassign(task) {
  const id = `reassign-${task.id}`;
  return el("form", { class: "form-row", onsubmit: (e) => {
    e.preventDefault();
    act(`/v1/tasks/${task.id}/reassign`, { department: document.getElementById(id).value }, "reassign.done");
  } },
  el("div", {}, el("label", { for: id }, t("reassign.department")), departmentSelect(id, false)),
  el("div", {}, el("button", { type: "submit", class: "secondary" }, t("reassign.submit"))));
}

function tasksTable(kase) {
  const head = ["col.department", "col.round", "col.status", "col.accept_by", "col.complete_by", "col.flags",
    "col.result", "col.evidence"].map((k) => el("th", { scope: "col" }, t(k)));
  const rows = kase.tasks.map((task) => el("tr", { dataset: { taskId: task.id, department: task.department } },
    cell(departmentName(task.department)), cell(task.round), cell(label("task", task.status)),
    cell(time(task.accept_by)), cell(time(task.complete_by)), cell(...flags(task)),
    cell(task.result || task.return_reason || "", asOf === null && OPEN_TASK.has(task.status) ? reassign(task) : null),
    cell(...evidenceLinks(task.evidence))));
  return el("table", { id: "tasks" }, el("thead", {}, el("tr", {}, ...head)), el("tbody", {}, ...rows));
}

function summary(entry) {
  const d = entry.data || {};
  const parts = [];
  const department = d.department || d.task?.department;
  if (department) parts.push(departmentName(department));
  if (d.departments?.length) parts.push(d.departments.map(departmentName).join("、"));
  for (const key of ["reason", "note", "result", "kind"]) if (d[key]) parts.push(key === "kind" ? t(`kind.${d[key]}`) : d[key]);
  if (d.into) parts.push(shortId(d.into));
  return parts.join(" · ");
}

function timeline(events) {
  return el("ol", { class: "timeline", id: "timeline" }, ...events.map((entry) => el("li",
    { dataset: { type: entry.type, version: entry.version } },
    time(entry.recorded_at), el("strong", {}, label("event", entry.type)), " ",
    el("span", {}, summary(entry)), " ", el("span", { class: "note" }, entry.actor),
    ...evidenceLinks(entry.data?.evidence))));
}

function reporterBlock(kase) {
  if (!kase.reporter) return t(kase.reporter_erased ? "detail.reporter.erased" : "detail.reporter.none");
  const shown = [kase.reporter.name, kase.reporter.phone].filter(Boolean).join(" ");
  const form = el("form", { class: "form-row", id: "unmask-form", onsubmit: (e) => {
    e.preventDefault();
    const purpose = document.getElementById("purpose").value.trim();
    if (!purpose) return say(t("detail.unmask.need"), false);
    showCase(kase.id, purpose);
  } },
  el("div", {}, el("label", { for: "purpose" }, t("detail.purpose")), el("input", { id: "purpose", maxlength: 200 })),
  el("div", {}, el("button", { type: "submit", class: "secondary" }, t("detail.unmask"))));
  return el("div", {}, el("span", { id: "reporter" }, shown), form);
}

function asOfForm(kase) {
  return el("form", { class: "form-row", id: "as-of-form", onsubmit: (e) => {
    e.preventDefault();
    const local = document.getElementById("as-of").value;
    asOf = local ? shanghai(local) : null;
    showCase(kase.id);
  } },
  el("div", {}, el("label", { for: "as-of" }, t("detail.as_of")), el("input", { id: "as-of", type: "datetime-local", step: 1 })),
  el("div", {}, el("button", { type: "submit", class: "secondary" }, t("detail.as_of.show"))),
  el("div", {}, el("button", { type: "button", class: "secondary", onclick: () => { asOf = null; showCase(kase.id); } },
    t("detail.as_of.now"))));
}

async function showCase(caseId, purpose = null, live = false) {
  if (!caseId) return;
  if (caseId !== chosen) asOf = null;
  chosen = caseId;
  const query = asOf ? `?as_of=${encodeURIComponent(asOf)}` : "";
  const [found, history] = await Promise.all([
    api(`/v1/cases/${caseId}${query}`, { purpose }),
    api(`/v1/cases/${caseId}/history`),
  ]);
  const body = document.getElementById("detail-body");
  if (!found.ok) {
    say(problemText(found), false);
    return;
  }
  const kase = found.data;
  if (live && shown === `${kase.id}@${kase.version}`) return;
  shown = asOf ? null : `${kase.id}@${kase.version}`;
  const where = [whereName(kase.location.grid, kase.location.street), kase.location.address].filter(Boolean).join(" · ");
  body.replaceChildren(el("div", { id: "case", dataset: { caseId: kase.id, version: kase.version } },
    el("p", {}, el("code", { id: "case-id" }, kase.id)),
    asOf ? el("p", { class: "as-of-note", id: "as-of-note" }, t("detail.as_of.note", { at: formatTime(asOf) })) : null,
    fields([
      ["col.status", el("span", { id: "case-status", dataset: { status: kase.status } }, label("status", kase.status))],
      ["col.category", categoryName(kase.category)],
      ["detail.location", where],
      ["detail.description", kase.description],
      ["col.reported_at", time(kase.reported_at)],
      ["dispatch.priority", kase.priority ? t(`priority.${kase.priority}`) : ""],
      ["col.round", kase.round || ""],
      ["col.reason", kase.queued_reason || kase.end_reason],
      ["detail.reporter", reporterBlock(kase)],
    ]),
    asOfForm(kase),
    asOf === null ? dispatcherActions(kase) : null,
    el("h3", {}, t("detail.tasks")), el("div", { class: "scroll" }, tasksTable(kase)),
    kase.attachments.length ? el("h3", {}, t("detail.attachments")) : null, ...evidenceLinks(kase.attachments),
    kase.verification ? el("h3", {}, t("detail.verification")) : null,
    kase.verification ? fields([["col.status", label("outcome", kase.verification.outcome)],
      ["search.grid", kase.verification.grid], ["col.actor", kase.verification.by],
      ["col.reason", kase.verification.reason]]) : null,
    el("h3", {}, t("detail.timeline")),
    history.ok ? timeline(history.data.events) : el("p", { class: "status error" }, problemText(history)),
  ));
  for (const row of document.querySelectorAll("tr[data-case-id]")) {
    row.classList.toggle("chosen", row.dataset.caseId === chosen);
  }
}

// --- live -----------------------------------------------------------------------------

const reloadQueue = debounce(loadQueue);
const reloadBoard = debounce(loadBoard);
const reloadCase = debounce(() => showCase(chosen, null, true));

function everything() {
  loadQueue();
  loadBoard();
  if (chosen) showCase(chosen);
  if (lastSearch) search();
}

await boot("page.workbench");
searchOptions();
document.getElementById("search").addEventListener("submit", search);
onLanguage(() => {
  searchOptions();
  everything();
});
new Live({
  onHello: everything,
  onNotice: (notice) => {
    if (QUEUE_CHANGES.has(notice.type)) reloadQueue();
    if (BOARD_CHANGES.has(notice.type)) reloadBoard();
    if (notice.case_id === chosen && asOf === null) reloadCase();
  },
}).connect();
