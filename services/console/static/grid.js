// A grid worker's phone: the verifications waiting in my grids; pass or fail, with evidence and a note.
import { api, boot, categoryName, departmentName, el, formatTime, label, onLanguage, problemText, say, shortId, t } from "./common.js";
import { evidenceFields, evidenceOf } from "./evidence.js";
import { debounce, Live, reloadUntil } from "./live.js";

const CHANGES = new Set(["VerificationRequested", "VerificationPassed", "VerificationFailed", "CaseClosed",
  "CaseReopened", "CaseCancelled", "CaseMerged", "CaseRejected"]);
let chosen = null;

async function loadVerifications() {
  const result = await api("/v1/verifications?status=pending&page_size=50");
  if (!result.ok) return say(problemText(result), false);
  const list = document.getElementById("verifications");
  const items = result.data.items.filter((v) => v.kind === "grid_worker");
  list.replaceChildren(...(items.length ? items.map((v) => el("li", {},
    el("button", { type: "button", class: "card", dataset: { verificationId: v.verification_id, caseId: v.case_id },
      onclick: () => showVerification(v) },
    el("strong", {}, categoryName(v.category)),
    el("span", {}, `${v.grid || ""} · ${shortId(v.case_id)}`), " ",
    el("time", { datetime: v.requested_at }, formatTime(v.requested_at)))))
    : [el("li", { class: "empty" }, t("verifications.empty"))]));
}

async function record(verification, verb, body, doneKey) {
  const result = await api(`/v1/verifications/${verification.verification_id}/${verb}`, { method: "POST", body });
  if (!result.ok) return say(problemText(result), false);
  say(t(doneKey));
  chosen = null;
  document.getElementById("verify-body").replaceChildren(el("p", { class: "empty" }, t("verify.none")));
  await loadVerifications();
}

async function showVerification(verification) {
  chosen = verification.verification_id;
  const found = await api(`/v1/cases/${verification.case_id}`);
  if (!found.ok) return say(problemText(found), false);
  const kase = found.data;
  const done = kase.tasks.filter((task) => task.round === kase.round && task.status === "completed");
  document.getElementById("verify-body").replaceChildren(
    el("dl", { class: "fields" },
      el("dt", {}, t("col.category")), el("dd", {}, categoryName(kase.category)),
      el("dt", {}, t("detail.location")), el("dd", {}, [kase.location.grid, kase.location.address].filter(Boolean).join(" · ")),
      el("dt", {}, t("detail.description")), el("dd", {}, kase.description || "—"),
      ...done.flatMap((task) => [el("dt", {}, departmentName(task.department)), el("dd", {}, task.result,
        ...task.evidence.map((a) => el("div", {}, el("a", { href: a.url, rel: "noopener noreferrer", target: "_blank" }, a.url))))])),
    el("form", { id: "verify-form", onsubmit: (e) => e.preventDefault() },
      evidenceFields("check"),
      el("label", { for: "verify-note" }, t("verify.note")),
      el("textarea", { id: "verify-note", maxlength: 2000 }),
      el("label", { for: "verify-reason" }, t("verify.reason")),
      el("input", { id: "verify-reason", maxlength: 2000 }),
      el("div", { class: "actions" },
        el("button", { type: "button", id: "pass", onclick: () => {
          if (!document.getElementById("verify-form").reportValidity()) return;
          record(verification, "pass", { evidence: evidenceOf("check"), note: document.getElementById("verify-note").value.trim() }, "verify.passed");
        } }, t("verify.pass")),
        el("button", { type: "button", id: "fail", class: "danger", onclick: () => {
          const reason = document.getElementById("verify-reason");
          reason.required = true;
          if (!document.getElementById("verify-form").reportValidity()) return;
          record(verification, "fail", { evidence: evidenceOf("check"), reason: reason.value.trim() }, "verify.failed");
        } }, t("verify.fail")))));
  document.getElementById("verify-body").scrollIntoView();
}

const reload = debounce(loadVerifications);

await boot("page.grid", { short: true });
onLanguage(loadVerifications);
new Live({
  onHello: loadVerifications,
  onNotice: (notice) => {
    if (notice.type === "VerificationRequested") {
      reloadUntil(loadVerifications, () => document.querySelector(`[data-verification-id="${notice.verification_id}"]`));
    } else if (CHANGES.has(notice.type)) {
      reload();
    }
  },
}).connect();
