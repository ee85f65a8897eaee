// Hash router and the frame around the pages (navigation, token dialog, unreachable-server banner).
import { getToken, setToken, meta } from "./api.js";
import * as jobs from "./pages/jobs.js";
import * as job from "./pages/job.js";
import * as submit from "./pages/submit.js";
import * as compare from "./pages/compare.js";
import * as leaderboard from "./pages/leaderboard.js";
import * as workers from "./pages/workers.js";

const ROUTES = [
  { re: /^jobs\/(\d+)$/, page: job, nav: "jobs", title: "Job" },
  { re: /^jobs$/, page: jobs, nav: "jobs", title: "Jobs" },
  { re: /^submit$/, page: submit, nav: "submit", title: "Submit" },
  { re: /^compare$/, page: compare, nav: "compare", title: "Compare" },
  { re: /^leaderboard$/, page: leaderboard, nav: "leaderboard", title: "Leaderboard" },
  { re: /^workers$/, page: workers, nav: "workers", title: "Workers" },
];

let cleanup = null;
let lastPath = null;

function parseHash() {
  const h = location.hash.replace(/^#\/?/, "");
  const [path, qs = ""] = h.split("?");
  return { path: path || "jobs", qs };
}

async function route() {
  const { path, qs } = parseHash();
  const match = ROUTES.map((r) => ({ r, m: path.match(r.re) })).find((x) => x.m);
  const main = document.getElementById("main");
  // Query-only changes (filters, pagination) let the page update itself in place.
  if (match && path === lastPath && cleanup && match.r.page.update) {
    match.r.page.update(main, { params: match.m.slice(1), query: Object.fromEntries(new URLSearchParams(qs)) });
    return;
  }
  if (cleanup) { try { cleanup(); } catch { /* page already gone */ } cleanup = null; }
  lastPath = path;
  document.querySelectorAll("[data-nav]").forEach((a) => {
    if (match && a.dataset.nav === match.r.nav) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  if (!match) {
    main.innerHTML = `<div class="empty"><strong>No such page</strong><a href="#/jobs">Go to the jobs list</a></div>`;
    return;
  }
  document.title = `${match.r.title} · DynDS`;
  main.innerHTML = "";
  const ret = match.r.page.render(main, { params: match.m.slice(1), query: Object.fromEntries(new URLSearchParams(qs)) });
  cleanup = ret && typeof ret === "function" ? ret : null;
  if (ret && typeof ret.then === "function") ret.then((c) => { if (typeof c === "function") cleanup = c; });
}

export function showBanner(text, { kind = "error", retry = false } = {}) {
  const b = document.getElementById("banner");
  if (!text) { b.hidden = true; b.innerHTML = ""; return; }
  b.className = "banner" + (kind === "warn" ? " warn" : "");
  b.textContent = text;
  if (retry) {
    const btn = document.createElement("button");
    btn.type = "button"; btn.className = "btn btn-small"; btn.textContent = "Try again";
    btn.onclick = () => { showBanner(null); lastPath = null; checkServer(); route(); };
    b.append(btn);
  }
  b.hidden = false;
}

function refreshTokenButton(m) {
  const btn = document.getElementById("token-btn");
  btn.classList.toggle("has-token", !!getToken());
  btn.textContent = getToken() ? "Token set" : m && m.auth_required ? "Set API token" : "API token";
}

async function checkServer() {
  try {
    const m = await meta({ refresh: true });
    refreshTokenButton(m);
    if ((m.auth_required || m.read_requires_token) && !getToken()) {
      showBanner(`This server needs an API token for ${m.read_requires_token ? "everything" : "submitting, cancelling and retrying"}. Set one with the “Set API token” button.`, { kind: "warn" });
    }
  } catch (err) {
    if (err.status === 0) showBanner(err.message, { retry: true });
    else if (err.status === 401 || err.status === 403) showBanner(err.message, { kind: "warn" });
  }
}

function setupToken() {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  document.getElementById("token-btn").addEventListener("click", () => {
    input.value = getToken();
    dialog.showModal();
    input.focus();
  });
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "save") setToken(input.value.trim());
    else if (dialog.returnValue === "clear") setToken("");
    else return;
    showBanner(null);
    checkServer();
    lastPath = null;
    route();
  });
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  setupToken();
  checkServer();
  route();
});
// Retry buttons inside error boxes re-render the page.
document.addEventListener("click", (e) => {
  if (e.target.closest && e.target.closest("[data-retry]")) { showBanner(null); lastPath = null; route(); }
});
