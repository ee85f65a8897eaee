// Pieces shared by the pages: colours, badges, render marks, the error/empty/loading states.
import { html, raw, esc } from "./format.js";

export const SCHEDULE_COLORS = {
  none: "#57606a", stochastic: "#1f5fbf", periodic: "#c2410c", phase: "#0f9d76", adaptive: "#8b3fd9",
};
export const RUN_STYLES = {
  dynds: { label: "DynDS", color: "#1f5fbf", dash: [] },
  baseline: { label: "Baseline", color: "#30363d", dash: [6, 4] },
  equal_time: { label: "Equal-time baseline", color: "#c2410c", dash: [2, 3] },
};
export const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
export const ACTIVE = new Set(["queued", "running"]);

export const statusBadge = (s) => html`<span class="badge ${s}">${s}</span>`;
export const kindDot = (kind) => raw(`<span class="legend-dot" style="background:${SCHEDULE_COLORS[kind] || "#999"}" aria-hidden="true"></span>`);

/** Record that a page has drawn: the benchmark reads window.__dyndsRendered (ms since navigation). */
export function markRendered(page) {
  requestAnimationFrame(() => {
    const t = performance.now();
    performance.mark(`dynds:rendered:${page}`);
    window.__dyndsRendered = { page, t, at: location.hash };
    document.body.dataset.rendered = page;
  });
}

export const loadingBox = (what) => html`<p class="loading" role="status">Loading ${what}…</p>`;
export const emptyBox = (title, text, action = "") => html`<div class="empty"><strong>${title}</strong>${text}${action ? raw(" " + action) : ""}</div>`;
export function errorBox(err) {
  const hint = err && err.status === 0 ? raw(' <button type="button" class="btn btn-small" data-retry>Try again</button>') : "";
  return html`<div class="alert error" role="alert">${err && err.message ? err.message : String(err)}${hint}</div>`;
}

export function chartLib() {
  if (!window.Chart) throw new Error("The chart library did not load (/static/vendor/chart.umd.min.js).");
  return window.Chart;
}

/** Hash query string <-> object. */
export function parseQuery(qs) { return Object.fromEntries(new URLSearchParams(qs || "")); }
export function toQuery(obj) {
  return new URLSearchParams(Object.entries(obj).filter(([, v]) => v !== "" && v !== null && v !== undefined)).toString();
}
export function setHashQuery(route, obj, { replace = false } = {}) {
  const qs = toQuery(obj);
  const hash = `#/${route}${qs ? "?" + qs : ""}`;
  if (replace) history.replaceState(null, "", hash); else location.hash = hash;
}
export { esc };
