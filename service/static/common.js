/* lrsearch dashboard: shared helpers. User data only ever reaches the DOM as textContent. */
"use strict";

const LR = (() => {
  const body = document.body;
  const config = body && body.dataset.config ? JSON.parse(body.dataset.config) : { api: "/api/v1", root: "" };
  const FINISHED = ["completed", "pruned", "diverged", "failed", "cancelled"];
  const TERMINAL_JOB = ["completed", "cancelled", "failed"];

  /** createElement with properties and children; strings become text nodes (never parsed as HTML). */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "className") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else if (key in node && typeof value !== "string") node[key] = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** Set textContent only when it changes (no needless layout work, no flicker). */
  function setText(node, text) {
    const s = text === undefined || text === null ? "" : String(text);
    if (node.textContent !== s) node.textContent = s;
  }

  /** A message under the top bar (text only); with `signIn`, a link to the sign-in page (`--auth`). */
  function banner(message, signIn) {
    const b = document.getElementById("banner");
    if (!b) return;
    if (!message) { b.hidden = true; b.replaceChildren(); return; }
    b.replaceChildren(document.createTextNode(message));
    if (signIn) {
      const next = encodeURIComponent(location.pathname + location.search);
      b.append(" ", el("a", { href: `${config.root}/login?next=${next}`, text: "Sign in" }));
    }
    b.hidden = false;
  }

  /** fetch JSON from the REST API; answers {ok, status, data}; throws only when the server is unreachable. */
  async function api(path, options) {
    const opts = Object.assign({ headers: {} }, options || {});
    opts.headers = Object.assign({ Accept: "application/json" }, opts.headers);
    if (opts.json !== undefined) {
      opts.body = typeof opts.json === "string" ? opts.json : JSON.stringify(opts.json);
      opts.headers["Content-Type"] = "application/json";
      delete opts.json;
    }
    opts.credentials = "same-origin"; // under --auth the sign-in cookie carries the key
    const base = path.startsWith("/dashboard-api") ? config.root : config.api;
    const response = await fetch(base + path, opts);
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (response.status === 401) banner("The service needs an API key (signed out, or the key was revoked).", true);
    return { ok: response.ok, status: response.status, data };
  }

  function errorText(res) {
    if (!res.data) return "HTTP " + res.status;
    if (res.data.message) return res.data.message;
    if (typeof res.data.detail === "string") return res.data.detail;
    return "HTTP " + res.status + ": " + JSON.stringify(res.data.detail);
  }

  function isNum(x) { return typeof x === "number" && Number.isFinite(x); }

  /** A learning rate: 4 significant digits, plain decimals where short, else exponent. */
  function fmtLr(x) {
    if (!isNum(x)) return "";
    const s = String(Number(x.toPrecision(4)));
    return s.length > 10 ? Number(x).toExponential(3).replace(/\.?0+e/, "e") : s;
  }
  function fmtLoss(x) {
    if (!isNum(x)) return "";
    const a = Math.abs(x);
    return a !== 0 && (a < 1e-3 || a >= 1e5) ? x.toExponential(3) : x.toFixed(4);
  }
  function fmtNum(x) { return isNum(x) ? String(Number(x.toPrecision(4))) : ""; }
  function pad(n) { return String(n).padStart(2, "0"); }
  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return "";
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  /** Today: the time; else the date and the minute. */
  function fmtWhen(iso) {
    const full = fmtTime(iso);
    if (!full) return "";
    return full.slice(0, 10) === fmtTime(new Date().toISOString()).slice(0, 10) ? full.slice(11) : full.slice(0, 16);
  }
  function fmtAgo(iso) {
    if (!iso) return "";
    const s = (Date.now() - new Date(iso).getTime()) / 1000;
    if (s < 60) return "just now";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }
  function seconds(a, b) {
    if (!a) return null;
    const end = b ? new Date(b).getTime() : Date.now();
    return Math.max(0, (end - new Date(a).getTime()) / 1000);
  }
  function fmtDuration(s) {
    if (s === null || s === undefined) return "";
    if (s < 60) return s.toFixed(1) + " s";
    if (s < 3600) return Math.floor(s / 60) + " m " + pad(Math.floor(s % 60)) + " s";
    return Math.floor(s / 3600) + " h " + pad(Math.floor((s % 3600) / 60)) + " m";
  }

  function finishedCount(counts) {
    return FINISHED.reduce((n, k) => n + ((counts && counts[k]) || 0), 0);
  }

  /** Update a status badge in place: the color comes from the class, the status itself is the text. */
  function setBadge(node, status) {
    const cls = "badge s-" + String(status).replace(/[^a-z_-]/gi, "");
    if (node.className !== cls) node.className = cls;
    setText(node, status);
  }
  function badge(status) { const b = el("span"); setBadge(b, status); return b; }

  function setBar(node, fraction) {
    const span = node.firstElementChild || node.appendChild(el("span"));
    const w = (Math.max(0, Math.min(1, fraction || 0)) * 100).toFixed(1) + "%";
    if (span.style.width !== w) span.style.width = w;
  }

  function setLive(state) {
    const live = document.getElementById("live");
    if (!live) return;
    live.className = "live" + (state === "on" ? " on" : state === "err" ? " err" : "");
    setText(live, state === "on" ? "live" : state === "err" ? "offline, retrying" : "idle");
  }

  async function copyText(text) {
    try {
      if (navigator.clipboard && window.isSecureContext) { await navigator.clipboard.writeText(text); return true; }
    } catch (_) { /* fall back below */ }
    const area = el("textarea", { style: "position:fixed;left:-9999px;top:0", readonly: true });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try { ok = document.execCommand("copy"); } catch (_) { ok = false; }
    area.remove();
    return ok;
  }

  /** A button that copies what text() answers and says so for a moment. */
  function copyButton(button, text) {
    const label = button.textContent;
    button.addEventListener("click", async () => {
      const ok = await copyText(text());
      button.textContent = ok ? "Copied \u2713" : "Copy failed";
      setTimeout(() => { button.textContent = label; }, 1500);
    });
  }

  /** Poll: call fn, then again after `interval(result)` ms (null: stop); never overlapping; slower in hidden
   *  tabs. Answers kick(), which runs an update now (or right after the one in flight). */
  function poll(fn, interval) {
    let timer = null, running = false, again = false, stopped = false;
    async function run() {
      timer = null; running = true;
      let next;
      try {
        const result = await fn();
        next = interval(result);
        setLive(next === null ? "idle" : "on");
      } catch (err) {
        console.warn("lrsearch: update failed", err);
        setLive("err");
        next = 3000;
      }
      running = false;
      if (again) { again = false; next = 0; }
      if (next === null) { stopped = true; return; }
      if (document.hidden) next = Math.max(next, 5000);
      timer = setTimeout(run, next);
    }
    function kick() {
      if (running) { again = true; return; }
      if (timer !== null) clearTimeout(timer);
      stopped = false;
      run();
    }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && !stopped && !running) kick();
    });
    run();
    return kick;
  }

  // A cancel button that needs two clicks (no dialog): the first arms it for a few seconds.
  function armCancel(button, jobId, labels, after) {
    let armed = false, timer = null;
    button.addEventListener("click", async () => {
      if (!armed) {
        armed = true; button.textContent = labels.armed;
        timer = setTimeout(() => { armed = false; button.textContent = labels.idle; }, 3000);
        return;
      }
      clearTimeout(timer); armed = false;
      button.disabled = true; button.textContent = "Cancelling\u2026";
      const res = await api(`/jobs/${jobId}/cancel`, { method: "POST" });
      if (!res.ok) banner("Cancel failed: " + errorText(res));
      after();
    });
  }

  return {
    config, el, setText, api, errorText, armCancel, isNum, fmtLr, fmtLoss, fmtNum, fmtTime, fmtWhen, fmtAgo, seconds, fmtDuration,
    finishedCount, setBadge, badge, setBar, setLive, copyText, copyButton, poll, banner, FINISHED, TERMINAL_JOB,
  };
})();
