// What every page shares: calls to the console's API (which forwards them with the person's own
// token, kept in an HttpOnly cookie this script never sees), the header, names and times.
import { applyWords, label, lang, onLanguage, switchLanguage, t } from "./i18n.js";

export const ZONE = "Asia/Shanghai";
export const state = { me: null, catalog: { categories: {}, departments: {}, streets: {}, grids: {} } };

export async function api(path, { method = "GET", body, purpose } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  // Browsers send header values in Latin-1 only: the purpose goes percent-encoded (UTF-8).
  if (purpose) headers["X-Purpose"] = encodeURIComponent(purpose);
  const response = await fetch(`/api${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (response.status === 401) {
    location.assign("/signin");
    throw new Error("signed out");
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text };
  }
  return { ok: response.ok, status: response.status, data };
}

// A DOM element from a tag, attributes and children; text goes in as text, never as HTML.
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function formatTime(iso) {
  if (!iso) return "—";
  return new Intl.DateTimeFormat(lang(), {
    timeZone: ZONE,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  }).format(new Date(iso));
}

// A moment typed in the command centre's time (datetime-local) as ISO 8601 with its offset.
// Asia/Shanghai keeps +08:00 all year.
export function shanghai(local) {
  return `${local.length === 16 ? `${local}:00` : local}+08:00`;
}

export function shortId(id) {
  return String(id).slice(0, 8);
}

export function categoryName(code) {
  const found = state.catalog.categories[code];
  return found ? (lang() === "en" ? found.en : found.zh) : code;
}

export function departmentName(code) {
  const found = state.catalog.departments[code];
  return found && lang() !== "en" ? found : code;
}

export function whereName(grid, street) {
  const streetName = street ? state.catalog.streets[street] || street : "";
  return [grid, streetName].filter(Boolean).join(" / ") || "—";
}

export function problemText(result) {
  const detail = result.data?.detail || result.data?.title || "";
  return t("error", { status: result.status, detail });
}

// A polite status line for what the person just did (screen readers hear it too).
export function say(text, ok = true) {
  const node = document.getElementById("status");
  node.textContent = text;
  node.className = ok ? "status ok" : "status error";
}

// The bar every signed-in page has: its title, the live status, who is signed in, the language
// switch and sign-out (a plain form post).
function header(titleKey, short) {
  const title = short ? [el("span", { "data-i18n": titleKey })]
    : [el("span", { "data-i18n": "app.title" }), " · ", el("span", { "data-i18n": titleKey })];
  document.querySelector("header.bar").replaceChildren(
    el("h1", {}, ...title),
    el("p", { id: "live-status", class: "live", role: "status", "aria-live": "polite" }),
    el("span", { id: "who" }),
    el("button", { id: "lang", type: "button", "data-i18n": "lang.switch" }),
    el("form", { method: "post", action: "/signout" },
      el("button", { type: "submit", id: "signout", "data-i18n": "signout" })),
  );
}

export async function boot(titleKey, { short = false } = {}) {
  header(titleKey, short);
  const [me, catalog] = await Promise.all([api("/me"), api("/catalog")]);
  state.me = me.data;
  state.catalog = catalog.data;
  const who = document.getElementById("who");
  const renderWho = () => {
    who.textContent = t("who", { role: label("role", state.me.role), sub: state.me.sub });
    document.title = `${t(titleKey)} · ${t("app.title")}`;
  };
  document.getElementById("lang").addEventListener("click", switchLanguage);
  onLanguage(renderWho);
  applyWords();
  renderWho();
  return state.me;
}

export { label, onLanguage, t };
