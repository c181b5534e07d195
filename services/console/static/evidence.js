// Evidence of a step: a photo's link, its SHA-256 (computed here from the photo when the person
// has it on this device) and its type, as the APIs take it.
import { el, t } from "./common.js";

const TYPES = ["image/jpeg", "image/png", "image/heic", "video/mp4"];

export function evidenceFields(prefix) {
  const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const onFile = async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    document.getElementById(`${prefix}-sha256`).value = hex(await crypto.subtle.digest("SHA-256", await file.arrayBuffer()));
    if (TYPES.includes(file.type)) document.getElementById(`${prefix}-type`).value = file.type;
  };
  return el("fieldset", {},
    el("legend", {}, t("col.evidence")),
    el("label", { for: `${prefix}-url` }, t("evidence.url")),
    el("input", { id: `${prefix}-url`, type: "url", required: true, placeholder: "https://", autocomplete: "off" }),
    el("label", { for: `${prefix}-sha256` }, t("evidence.sha256")),
    el("input", { id: `${prefix}-sha256`, required: true, pattern: "[0-9a-f]{64}", autocomplete: "off", spellcheck: "false" }),
    el("label", { for: `${prefix}-file` }, t("evidence.file")),
    el("input", { id: `${prefix}-file`, type: "file", accept: "image/*,video/mp4", onchange: onFile }),
    el("label", { for: `${prefix}-type` }, t("evidence.type")),
    el("select", { id: `${prefix}-type` }, ...TYPES.map((type) => el("option", { value: type }, type))));
}

export function evidenceOf(prefix) {
  return [{
    url: document.getElementById(`${prefix}-url`).value.trim(),
    sha256: document.getElementById(`${prefix}-sha256`).value.trim().toLowerCase(),
    media_type: document.getElementById(`${prefix}-type`).value,
  }];
}
