// Live updates over Server-Sent Events. The stream sequence is each event's id: the browser sends
// the last one back when it reconnects (Last-Event-ID), and the console replays what was missed.
// When the browser gives up (the console restarting refuses the connection), this script opens a
// new stream itself, with the last id it saw, after a second.
import { api, el, categoryName, departmentName, formatTime, label, shortId, t } from "./common.js";

const FEED_MAX = 50;

export class Live {
  constructor({ onNotice, onHello }) {
    this.onNotice = onNotice;
    this.onHello = onHello;
    this.lastId = null;
    this.seen = new Set();
    this.dropped = false;
    this.replayed = 0;
    this.status = document.getElementById("live-status");
    this.feed = document.getElementById("feed");
    this.show("connecting", t("live.connecting"));
  }

  show(state, text) {
    this.status.dataset.state = state;
    this.status.textContent = text;
  }

  connect() {
    const query = this.lastId === null ? "" : `?last_event_id=${this.lastId}`;
    const source = new EventSource(`/api/events${query}`);
    this.source = source;
    source.addEventListener("notice", (event) => this.notice(event));
    source.addEventListener("hello", (event) => {
      const at = JSON.parse(event.data).seq;
      this.lastId = this.lastId === null ? at : Math.max(this.lastId, at);
      const resumed = this.dropped;
      this.dropped = false;
      const text = resumed && this.replayed ? t("live.resumed", { n: this.replayed }) : t(resumed ? "live.back" : "live.connected");
      this.show("connected", text);
      this.replayed = 0;
      this.onHello();
    });
    source.addEventListener("reset", () => this.onHello());
    source.addEventListener("signed-out", () => location.assign("/signin"));
    source.addEventListener("error", () => {
      if (!this.dropped) this.replayed = 0;
      this.dropped = true;
      this.show("reconnecting", t("live.reconnecting"));
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(() => this.reopen(), 1000);
      }
    });
  }

  async reopen() {
    try {
      await api("/me"); // signed out meanwhile: this goes to the sign-in page
    } catch {
      setTimeout(() => this.reopen(), 1000); // the console is still away
      return;
    }
    this.connect();
  }

  notice(event) {
    const seq = Number(event.lastEventId);
    if (this.seen.has(seq)) return; // never twice, whatever the network did
    this.seen.add(seq);
    this.lastId = this.lastId === null ? seq : Math.max(this.lastId, seq);
    if (this.dropped) this.replayed += 1;
    const item = JSON.parse(event.data);
    this.addToFeed(item);
    this.onNotice(item);
  }

  addToFeed(item) {
    this.feed.querySelector(".empty")?.remove();
    const what = [label("event", item.type), item.category ? categoryName(item.category) : "",
      item.department ? departmentName(item.department) : "", item.grid || ""].filter(Boolean).join(" · ");
    const entry = el(
      "li",
      { dataset: { seq: item.seq, type: item.type, caseId: item.case_id } },
      el("time", { datetime: item.recorded_at }, formatTime(item.recorded_at)),
      " ",
      el("span", { class: "feed-what" }, what),
      " ",
      el("code", {}, shortId(item.case_id)),
    );
    this.feed.prepend(entry);
    while (this.feed.children.length > FEED_MAX) this.feed.lastElementChild.remove();
  }
}

// Many notices in a burst: one reload of a list, not one each.
export function debounce(fn, ms = 200) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

// A list API's read model may trail the stream by a moment: after a notice of something new,
// reload until it shows (or a few seconds have passed).
export async function reloadUntil(reload, shows, tries = 20) {
  for (let i = 0; i < tries; i += 1) {
    await reload();
    if (shows()) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
