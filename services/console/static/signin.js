// The sign-in page's words and its message; the token itself is posted by the plain form.
import { applyWords, onLanguage, switchLanguage, t } from "./i18n.js";

function render() {
  const query = new URLSearchParams(location.search);
  const status = document.getElementById("status");
  const error = query.get("error");
  if (error) {
    status.textContent = t(`signin.error.${error}`);
    status.className = "status error";
  } else if (query.has("signed_out")) {
    status.textContent = t("signin.signed_out");
    status.className = "status ok";
  }
  document.title = `${t("page.signin")} · ${t("app.title")}`;
}

document.getElementById("lang").addEventListener("click", switchLanguage);
onLanguage(render);
applyWords();
render();
