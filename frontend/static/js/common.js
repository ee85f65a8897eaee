// Pieces shared by the pages: colours, badges, render marks, the error/empty/loading states.
import { html, raw, esc, pct } from "./format.js";
import { phaseWords } from "./progress.js";

export const SCHEDULE_COLORS = {
  none: "#57606a", stochastic: "#1f5fbf", periodic: "#c2410c", phase: "#0f9d76", adaptive: "#8b3fd9",
  progressive: "#b45309", mixsize: "#0e7490", // DynDS's relatives
};
export const RUN_STYLES = {
  dynds: { label: "DynDS", color: "#1f5fbf", dash: [] },
  baseline: { label: "Baseline", color: "#30363d", dash: [6, 4] },
  equal_time: { label: "Equal-time baseline", color: "#c2410c", dash: [2, 3] },
};
export const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
export const ACTIVE = new Set(["queued", "running"]);

export const statusBadge = (s) => html`<span class="badge ${s}">${s}</span>`;

/** The verdict classes (dynds_core.verdict): a short word, a colour class and what it means. */
export const VERDICTS = {
  beats_equal_time: { word: "worth it", cls: "v-good", means: "beats the baseline trained for the same time" },
  loses_to_equal_time: { word: "not worth it", cls: "v-bad", means: "the baseline trained for the same time is more accurate" },
  tie: { word: "tie", cls: "v-tie", means: "no clear difference from the baseline trained for the same time" },
  needs_seeds: { word: "needs seeds", cls: "v-seeds", means: "too few seeds to decide" },
  no_equal_time: { word: "no equal-time run", cls: "v-none", means: "no equal-time baseline ran, so there is nothing to decide against" },
};
export const verdictWord = (kind) => (VERDICTS[kind] ? VERDICTS[kind].word : kind || "no verdict");
/** The verdict class as a coloured word; the sentence (when given) on hover. */
export function verdictBadge(kind, sentence = null) {
  const v = VERDICTS[kind];
  const title = sentence || (v ? v.means : "no verdict was recorded");
  return html`<span class="verdict ${v ? v.cls : "v-none"}" title="${title}" data-verdict="${kind || ""}">${verdictWord(kind)}</span>`;
}
/** The verdict word that opens to its sentence on click (phones have no hover). */
export function verdictDetails(kind, sentence) {
  if (!sentence) return verdictBadge(kind);
  return html`<details class="verdict-details"><summary>${verdictBadge(kind, sentence)}</summary><p class="verdict-text">${sentence}</p></details>`;
}
export const noisyBadge = (reason) => html`<span class="badge noisy" title="${reason || "the timing of this job cannot be trusted"}">timing noisy</span>`;
/** A job that did not have its hardware to itself (JobResult.contended): flagged like noisy timing, kept out of rankings. */
export const contendedBadge = (reason) => html`<span class="badge contended" title="${reason || "the job did not have its hardware to itself"}">contended</span>`;
/** The schedule kind's colour; with `named`, its name on hover and for screen readers (where no text beside it says it). */
export const kindDot = (kind, { named = false } = {}) => raw(`<span class="legend-dot" style="background:${SCHEDULE_COLORS[kind] || "#999"}" ${named
  ? `role="img" aria-label="${esc(kind || "unknown")} schedule" title="${esc(kind || "unknown")} schedule"` : 'aria-hidden="true"'}></span>`);

/** Record that a page has drawn: the benchmark reads window.__dyndsRendered (ms since navigation). */
export function markRendered(page) {
  requestAnimationFrame(() => {
    const t = performance.now();
    performance.mark(`dynds:rendered:${page}`);
    window.__dyndsRendered = { page, t, at: location.hash };
    document.body.dataset.rendered = page;
  });
}

/** A job's bar over all its runs (progress.js overallProgress); `label` names it for screen readers. */
export function jobProgressBar(o, label) {
  const v = (o.fraction * 100).toFixed(1);
  return html`<div class="bar" role="progressbar" aria-label="${label}" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${Math.round(o.fraction * 100)}"
    aria-valuetext="${pct(o.fraction, 0)}, ${phaseWords(o)}"><span style="width:${v}%"></span></div>`;
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
