// A department's tasks: accept, note progress, complete with evidence, or return with a reason.
import {
  api, boot, categoryName, el, formatTime, label, onLanguage, problemText, say, shortId, t, whereName,
} from "./common.js";
import { evidenceFields, evidenceOf } from "./evidence.js";
import { debounce, Live, reloadUntil } from "./live.js";

const FILTERS = ["open", "dispatched", "accepted", "completed", "returned", "all"];
let chosen = null;
let shown = null;

const cell = (...children) => el("td", {}, ...children);
const time = (iso) => el("time", { datetime: iso || "" }, formatTime(iso));

function filterOptions() {
  const select = document.getElementById("task-filter");
  const current = select.value || "open";
  select.replaceChildren(...FILTERS.map((f) => el("option", { value: f },
    f === "open" ? `${label("task", "dispatched")} + ${label("task", "accepted")}` : f === "all" ? t("search.any") : label("task", f))));
  select.value = current;
}

async function loadTasks() {
  const filter = document.getElementById("task-filter").value || "open";
  const statuses = filter === "open" ? ["dispatched", "accepted"] : filter === "all" ? [null] : [filter];
  const results = await Promise.all(statuses.map((s) => api(`/v1/tasks?page_size=100${s ? `&status=${s}` : ""}`)));
  const failed = results.find((r) => !r.ok);
  if (failed) return say(problemText(failed), false);
  const items = results.flatMap((r) => r.data.items).sort((a, b) => a.complete_by.localeCompare(b.complete_by));
  const table = document.getElementById("tasks");
  const rows = items.map((task) => el("tr", { dataset: { taskId: task.id, caseId: task.case_id }, class: task.id === chosen ? "chosen" : null },
    cell(el("code", { title: task.case_id }, shortId(task.case_id))), cell(categoryName(task.category)),
    cell(whereName(task.grid, null)), cell(label("task", task.status)), cell(time(task.accept_by)), cell(time(task.complete_by)),
    cell(el("button", { type: "button", class: "secondary", dataset: { open: task.id }, onclick: () => showTask(task.id) },
      t("open"), el("span", { class: "skip" }, ` ${shortId(task.case_id)}`)))));
  table.tBodies[0].replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colspan: 7, class: "empty" }, t("tasks.empty")))]));
}

async function command(verb, body, doneKey) {
  const result = await api(`/v1/tasks/${chosen}/${verb}`, { method: "POST", body });
  if (!result.ok) return say(problemText(result), false);
  say(t(doneKey));
  await Promise.all([loadTasks(), showTask(chosen)]);
}

function returnForm() {
  return el("form", { id: "return-form", onsubmit: (e) => {
    e.preventDefault();
    command("return", { reason: document.getElementById("return-reason").value.trim() }, "task.returned");
  } },
  el("label", { for: "return-reason" }, t("task.return.reason")),
  el("input", { id: "return-reason", required: true, maxlength: 200 }),
  el("div", { class: "actions" }, el("button", { type: "submit", class: "danger", id: "return" }, t("task.return"))));
}

function actions(task) {
  if (task.status === "dispatched") {
    return [el("div", { class: "actions" }, el("button", { type: "button", id: "accept",
      onclick: () => command("accept", {}, "task.accepted") }, t("task.accept"))), returnForm()];
  }
  if (task.status !== "accepted") return [];
  return [
    el("form", { id: "note-form", onsubmit: (e) => {
      e.preventDefault();
      command("notes", { note: document.getElementById("note").value.trim() }, "task.noted");
    } },
    el("label", { for: "note" }, t("task.note")), el("textarea", { id: "note", required: true, maxlength: 2000 }),
    el("div", { class: "actions" }, el("button", { type: "submit", class: "secondary", id: "add-note" }, t("task.note.submit")))),
    el("form", { id: "complete-form", onsubmit: (e) => {
      e.preventDefault();
      command("complete", { result: document.getElementById("result").value.trim(), evidence: evidenceOf("done") },
        "task.completed");
    } },
    el("label", { for: "result" }, t("task.result")), el("textarea", { id: "result", required: true, maxlength: 2000 }),
    evidenceFields("done"),
    el("div", { class: "actions" }, el("button", { type: "submit", id: "complete" }, t("task.complete")))),
    returnForm(),
  ];
}

async function showTask(taskId, live = false) {
  if (!taskId) return;
  chosen = taskId;
  const result = await api(`/v1/tasks/${taskId}`);
  if (!result.ok) return say(problemText(result), false);
  const { task, case: brief, version } = result.data;
  if (live && shown === `${taskId}@${version}`) return;
  shown = `${taskId}@${version}`;
  const flags = [...task.warned.map((k) => `${t("flag.warned")}·${t(`kind.${k}`)}`),
    ...task.overdue.map((k) => `${t("flag.overdue")}·${t(`kind.${k}`)}`)].join(" ");
  document.getElementById("task-body").replaceChildren(
    el("dl", { class: "fields" },
      el("dt", {}, t("col.status")), el("dd", { id: "task-status", dataset: { status: task.status } }, label("task", task.status)),
      el("dt", {}, t("col.category")), el("dd", {}, categoryName(brief.category)),
      el("dt", {}, t("detail.location")), el("dd", {}, [whereName(brief.location.grid, brief.location.street), brief.location.address].filter(Boolean).join(" · ")),
      el("dt", {}, t("detail.description")), el("dd", {}, brief.description || "—"),
      el("dt", {}, t("col.accept_by")), el("dd", {}, time(task.accept_by)),
      el("dt", {}, t("col.complete_by")), el("dd", {}, time(task.complete_by)),
      el("dt", {}, t("col.flags")), el("dd", {}, flags || "—"),
      el("dt", {}, t("col.case")), el("dd", {}, el("code", {}, brief.id))),
    ...actions(task));
  for (const row of document.querySelectorAll("tr[data-task-id]")) row.classList.toggle("chosen", row.dataset.taskId === chosen);
}

const reloadTasks = debounce(loadTasks);
const reloadTask = debounce(() => showTask(chosen, true));

await boot("page.department");
filterOptions();
document.getElementById("task-filter").addEventListener("change", loadTasks);
onLanguage(() => {
  filterOptions();
  loadTasks();
  if (chosen) showTask(chosen);
});
new Live({
  onHello: () => {
    loadTasks();
    if (chosen) showTask(chosen);
  },
  onNotice: (notice) => {
    if (notice.type === "TaskDispatched") {
      reloadUntil(loadTasks, () => document.querySelector(`#tasks tr[data-task-id="${notice.task_id}"]`));
    } else {
      reloadTasks();
    }
    if (notice.task_id === chosen) reloadTask();
  },
}).connect();
