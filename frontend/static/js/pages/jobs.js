// Jobs: every job with its state, the hardware it ran on, live progress and (when done) time saving and
// accuracy delta.
import { get, meta } from "../api.js";
import { html, raw, esc, pct, pt, when, signClass, int } from "../format.js";
import { statusBadge, kindDot, markRendered, loadingBox, emptyBox, errorBox, STATUSES, ACTIVE, setHashQuery, verdictBadge, noisyBadge, contendedBadge, jobProgressBar } from "../common.js";
import { overallProgress, phaseWords } from "../progress.js";
import { hardwareBadge, hardwareMissing, UNKNOWN_HARDWARE } from "../hardware.js";

const PAGE = 50;
const POLL_MS = 2000;
const FILTERS = ["status", "arch", "dataset", "schedule_kind", "hardware_key", "q"];

/**
 * Sortable columns, each ordered by the server (GET /jobs?order=, an index per column), so a sort holds across
 * every page; jobs without a value (no figures yet) come last either way. States and verdicts sort by name.
 * `first`: the direction a first click gives; `words`: [ascending, descending] for the phone's select.
 */
export const SORTS = {
  id: { label: "Job", api: "id", first: "desc", words: ["lowest id first", "highest id first"] },
  name: { label: "Name", api: "name", first: "asc", words: ["A to Z", "Z to A"] },
  status: { label: "Status", api: "status", first: "asc", words: ["A to Z", "Z to A"] },
  track: { label: "Track", api: "track", first: "asc", words: ["A to Z", "Z to A"] },
  hardware: { label: "Hardware", api: "hardware_key", first: "asc", words: ["A to Z", "Z to A"] },
  schedule: { label: "Schedule", api: "schedule_kind", first: "asc", words: ["A to Z", "Z to A"] },
  time_saving: { label: "Time saving", api: "time_saving", first: "desc", words: ["lowest first", "highest first"] },
  acc_delta: { label: "Acc. Δ", api: "acc_delta", first: "desc", words: ["lowest first", "highest first"] },
  gap: { label: "Gap to equal time", api: "equal_time_gap", first: "desc", words: ["lowest first", "highest first"] },
  verdict: { label: "Verdict", api: "verdict", first: "asc", words: ["A to Z", "Z to A"] },
  created: { label: "Created", api: "created_at", first: "desc", words: ["oldest first", "newest first"] },
  finished: { label: "Finished", api: "finished_at", first: "desc", words: ["earliest first", "latest first"] },
};
const DEFAULT_SORT = "-created";

/** "-time_saving" -> {key: "time_saving", dir: "desc"}; anything unknown -> the default (newest first). */
export function parseSort(text) {
  const s = String(text || DEFAULT_SORT);
  const key = s.replace(/^-/, "");
  if (!SORTS[key]) return parseSort(DEFAULT_SORT);
  return { key, dir: s.startsWith("-") ? "desc" : "asc" };
}
const sortText = ({ key, dir }) => (dir === "desc" ? "-" : "") + key;
/** The GET /jobs order of a sort: "-time_saving", "created_at", ... */
export const apiOrder = (sort) => (sort.dir === "desc" ? "-" : "") + SORTS[sort.key].api;

let state = null;

export function render(root, { query }) {
  root.innerHTML = String(html`
    <div class="page-head">
      <div><h1>Jobs</h1><p class="muted">Every training job: live progress while it runs, the time saving and accuracy delta against its baseline once done.</p></div>
      <a class="btn btn-primary" href="#/submit">New job</a>
    </div>
    <form class="panel filters" id="job-filters" role="search" aria-label="Filter jobs">
      <div class="field"><label for="f-status">Status</label><select id="f-status" name="status"><option value="">Any</option>
        ${STATUSES.map((s) => html`<option value="${s}">${s}</option>`)}</select></div>
      <div class="field"><label for="f-arch">Architecture</label><select id="f-arch" name="arch"><option value="">Any</option></select></div>
      <div class="field"><label for="f-dataset">Data set</label><select id="f-dataset" name="dataset"><option value="">Any</option></select></div>
      <div class="field"><label for="f-kind">Schedule kind</label><select id="f-kind" name="schedule_kind"><option value="">Any</option></select></div>
      <div class="field"><label for="f-hw">Hardware</label><select id="f-hw" name="hardware_key"><option value="">Any</option></select></div>
      <div class="field"><label for="f-q">Search</label><input id="f-q" name="q" type="search" placeholder="name or track"></div>
      <div class="field show-sm"><label for="f-sort">Sort by</label><select id="f-sort" name="sort">
        ${Object.entries(SORTS).flatMap(([k, c]) => ["desc", "asc"].map((d) => {
          const v = sortText({ key: k, dir: d });
          return html`<option value="${v}"${raw(v === DEFAULT_SORT ? " selected" : "")}>${c.label}: ${c.words[d === "asc" ? 0 : 1]}</option>`;
        }))}</select></div>
      <div class="field actions"><button type="reset" class="btn">Clear filters</button></div>
    </form>
    <div id="jobs-table" aria-live="polite">${loadingBox("jobs")}</div>`);
  state = { root, query: {}, timer: null, seq: 0, hardware: new Set() };
  const form = root.querySelector("#job-filters");
  meta().then((m) => {
    const fill = (id, values) => {
      const sel = root.querySelector(id);
      if (!sel) return;
      for (const v of values || []) sel.add(new Option(v, v));
      sel.value = state.query[sel.name] || "";
    };
    fill("#f-arch", m.choices && m.choices.arch);
    fill("#f-dataset", m.choices && m.choices.dataset);
    fill("#f-kind", m.choices && m.choices.schedule_kind);
  }).catch(() => { /* the table shows the error */ });
  // The hardware keys results were measured on (the tracks, without their cells); the pages shown add theirs.
  get("/leaderboard/tracks").then((lb) => addHardware((lb.tracks || []).map((t) => t.hardware_key)))
    .catch(() => { /* the keys seen on the pages still fill it */ });
  let typing = null;
  form.addEventListener("input", (e) => {
    clearTimeout(typing);
    typing = setTimeout(() => applyFilters(form), e.target.name === "q" ? 300 : 0);
  });
  form.addEventListener("submit", (e) => { e.preventDefault(); applyFilters(form); });
  form.addEventListener("reset", () => setTimeout(() => applyFilters(form), 0));
  // Headers sort (the table is redrawn on every poll: one listener on its box).
  root.querySelector("#jobs-table").addEventListener("click", (e) => {
    const btn = e.target.closest && e.target.closest("button[data-sort]");
    if (!btn) return;
    const cur = parseSort(state.query.sort);
    const key = btn.dataset.sort;
    const dir = cur.key === key ? (cur.dir === "asc" ? "desc" : "asc") : SORTS[key].first;
    state.refocus = key;
    setHashQuery("jobs", { ...filtersOf(state.query), sort: sortParam({ key, dir }) });
  });
  update(root, { query });
  return () => { clearTimeout(state.timer); state = null; };
}

/** Add hardware keys to the filter's choices (kept sorted, "unknown" last); the chosen one stays chosen. */
function addHardware(keys) {
  if (!state) return;
  const sel = state.root.querySelector("#f-hw");
  const fresh = keys.filter((k) => k && !state.hardware.has(k));
  if (!sel || !fresh.length) return;
  fresh.forEach((k) => state.hardware.add(k));
  const chosen = sel.value || state.query.hardware_key || "";
  const order = [...state.hardware].sort((a, b) => (a === UNKNOWN_HARDWARE) - (b === UNKNOWN_HARDWARE) || a.localeCompare(b));
  sel.length = 1;
  for (const k of order) sel.add(new Option(k === UNKNOWN_HARDWARE ? "unknown (not recorded)" : k, k));
  sel.value = chosen;
}

const filtersOf = (query) => Object.fromEntries(FILTERS.filter((k) => query[k]).map((k) => [k, query[k]]));
// The default order stays out of the URL.
const sortParam = (sort) => (sortText(sort) === DEFAULT_SORT ? "" : sortText(sort));

function applyFilters(form) {
  const q = {};
  for (const k of FILTERS) if (form.elements[k].value) q[k] = form.elements[k].value;
  q.sort = sortParam(parseSort(form.elements.sort.value));
  setHashQuery("jobs", q);
}

export function update(root, { query }) {
  state.query = query;
  addHardware([query.hardware_key]);
  const form = root.querySelector("#job-filters");
  for (const k of FILTERS) if (form.elements[k] && document.activeElement !== form.elements[k]) form.elements[k].value = query[k] || "";
  form.elements.sort.value = sortText(parseSort(query.sort));
  load(true);
}

async function load(first) {
  if (!state) return;
  clearTimeout(state.timer);
  const seq = ++state.seq;
  // Pages follow the server's cursors (fast at any depth, stable while jobs are added); `page` numbers them.
  const pageNo = Math.max(1, parseInt(state.query.page || "1", 10) || 1);
  const cursor = pageNo > 1 ? state.query.cursor : undefined;
  const offset = (pageNo - 1) * PAGE;
  const box = state.root.querySelector("#jobs-table");
  let page;
  try {
    const order = apiOrder(parseSort(state.query.sort));
    page = await get("/jobs", { ...Object.fromEntries(FILTERS.map((k) => [k, state.query[k]])), limit: PAGE, order, cursor });
  } catch (err) {
    if (!state || seq !== state.seq) return;
    box.innerHTML = String(errorBox(err));
    markRendered("jobs");
    return;
  }
  if (!state || seq !== state.seq) return;
  // Keep keyboard focus on a sort header across redraws (the poll and the sort itself redraw the table).
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest("#jobs-table button[data-sort]");
  const refocus = state.refocus || (focused && focused.dataset.sort);
  state.refocus = null;
  addHardware(page.data.map((j) => j.hardware_key));
  box.innerHTML = String(table(page, offset));
  if (refocus) box.querySelector(`button[data-sort="${refocus}"]`)?.focus();
  if (first) markRendered("jobs");
  // Live progress: poll while anything on this page can still change.
  if (page.data.some((j) => ACTIVE.has(j.status))) state.timer = setTimeout(() => load(false), POLL_MS);
}

function progressCell(j) {
  const p = j.progress;
  const o = j.status === "running" ? overallProgress(j.spec, p) : null;
  if (o) {
    const frac = o.fraction;
    return html`<div class="progress" title="${pct(frac, 0)} of the job; ${phaseWords(o)}: ${pct(o.runFraction, 0)}, epoch ${Math.min((p.epoch ?? 0) + 1, p.epochs ?? Infinity)} of ${p.epochs ?? "?"}, step ${p.step ?? 0} of ${p.total_steps ?? "?"}">
      ${jobProgressBar(o, `progress of job ${j.id}, all its runs`)}
      <span class="muted">${pct(frac, 0)} · ${o.first === o.last ? `run ${o.first}/${o.runs}` : `runs ${o.first}–${o.last}/${o.runs}`}</span></div>`;
  }
  if (j.status === "running") return html`<span class="muted">starting…</span>`;
  if (j.status === "queued") return html`<span class="muted">${j.cancel_requested ? "cancelling" : "waiting"}</span>`;
  // The first line, cut to the column's width by CSS (a long one pushed the table past its frame); all of it on hover.
  if (j.status === "failed") {
    const text = (j.error || "failed").trim();
    const lines = text.split("\n").filter((l) => l.trim());
    const headline = lines.length > 1 && /Traceback/.test(text) ? lines[lines.length - 1] : lines[0];
    return html`<span class="neg err-text" title="${text}">${headline}</span>`;
  }
  if (j.status === "cancelled") return html`<span class="muted">stopped</span>`;
  return html`<span class="muted">done</span>`;
}

/** when(), without the year of this year's dates or the time of older years' (the column stays narrow). */
function shortWhen(iso) {
  const d = iso ? new Date(iso) : null;
  if (!d || Number.isNaN(d.getTime()) || Date.now() - d.getTime() < 86400e3) return when(iso);
  return d.getFullYear() === new Date().getFullYear()
    ? d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" })
    : d.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

/** Words for a figure a job does not have (yet). */
function absentWords(j, what) {
  if (j.status === "succeeded") return what;
  if (ACTIVE.has(j.status)) return "not finished";
  return "not run";
}

/** The hardware a job ran on (the key, short enough for a row), or why there is none. */
function hardwareCell(j) {
  const missing = hardwareMissing(j.hardware_key, j.status);
  return missing ? html`<span class="muted">${missing}</span>` : hardwareBadge(j.hardware_key);
}

function table(page, offset) {
  const filtered = FILTERS.some((k) => state.query[k]);
  if (!page.data.length) {
    return filtered
      ? emptyBox("No jobs match these filters.", " ", '<a href="#/jobs">Show all jobs</a>')
      : emptyBox("No jobs yet.", " Submit a spec to start training.", '<a class="btn btn-primary" href="#/submit">Submit a job</a>');
  }
  const sort = parseSort(state.query.sort);
  const rows = page.data.map((j) => {
    const s = j.summary || {};
    const done = j.status === "succeeded";
    const noBase = absentWords(j, "no baseline");
    const flags = html`${done && s.timing_noisy ? html`${noisyBadge("timing noisy: the paired and interleaved time savings disagree, or the full steps varied; open the job for the reason")} ` : ""}${
      done && s.contended ? html`${contendedBadge("contended: the job did not have its hardware to itself, so its time saving is not its hardware's; open the job for the reason")} ` : ""}`;
    return html`<tr${done && (s.timing_noisy || s.contended) ? raw(' class="noisy-row"') : ""} data-job="${j.id}" data-hardware="${j.hardware_key || ""}">
      <td data-label="Job" class="num c-id"><a href="#/jobs/${j.id}">#${j.id}</a></td>
      <td data-label="Name" class="wrap c-name"><a href="#/jobs/${j.id}"><span class="show-sm muted">#${j.id} </span>${j.name}</a>${j.attempt > 1 ? html` <span class="muted">(attempt ${j.attempt})</span>` : ""}</td>
      <td data-label="Status" class="c-status">${statusBadge(j.status)}</td>
      <td data-label="Progress" class="c-progress${done ? " hide-sm" : ""}">${progressCell(j)}</td>
      <td data-label="Hardware" class="c-track"><span class="track-name">${raw(esc(j.track).replace(/\//g, "/<wbr>"))}</span> <span class="c-hw">${hardwareCell(j)}</span></td>
      <td data-label="Schedule" class="hide-sm">${kindDot(j.schedule_kind)}${j.schedule_kind}</td>
      <td data-label="Time saving" class="num c-fig c-ts ${signClass(s.time_saving)}">${flags}${pct(s.time_saving, 1, noBase)}</td>
      <td data-label="Acc. Δ" class="num c-fig c-acc ${signClass(s.acc_delta)}">${pt(s.acc_delta, 2, noBase)}</td>
      <td data-label="Verdict" class="c-fig c-verdict">${done ? (s.verdict ? verdictBadge(s.verdict) : html`<span class="muted">no verdict</span>`) : html`<span class="muted">${absentWords(j, "") || "—"}</span>`}</td>
      <td data-label="Created" class="hide-sm" title="${j.created_at ? new Date(j.created_at).toLocaleString() : ""}">${shortWhen(j.created_at)}</td></tr>`;
  });
  const end = offset + page.data.length;
  const pageNo = Math.floor(offset / PAGE) + 1;
  // The way back: the cursor each page was reached by, remembered for this filter and order.
  const q = { ...filtersOf(state.query), ...(state.query.sort ? { sort: state.query.sort } : {}) };
  const trail = (state.trail = state.trailKey === JSON.stringify(q) ? state.trail : {});
  state.trailKey = JSON.stringify(q);
  trail[pageNo] = state.query.cursor;
  const link = (n, cursor) => "#/jobs?" + new URLSearchParams(n > 1 && cursor ? { ...q, page: n, cursor } : q).toString();
  const col = SORTS[sort.key];
  const words = `${col.label.toLowerCase()}, ${col.words[sort.dir === "asc" ? 0 : 1]}`;
  const order = sortText(sort) === DEFAULT_SORT ? "newest first" : `by ${words}`;
  const total = page.count_exact === false ? `about ${int(page.count)}` : int(page.count);
  const th = (key, cls = "") => {
    const c = SORTS[key];
    const on = sort.key === key;
    const mark = on ? (sort.dir === "asc" ? "▲" : "▼") : "↕";
    return html`<th class="${cls}" scope="col"${on ? raw(` aria-sort="${sort.dir === "asc" ? "ascending" : "descending"}"`) : ""}><button type="button" class="th-sort${on ? " on" : ""}" data-sort="${key}">${c.label}<span class="sort-mark" aria-hidden="true">${mark}</span></button></th>`;
  };
  const byDate = sort.key === "created";
  const [newer, older] = byDate && sort.dir === "desc" ? ["← Newer", "Older →"] : ["← Previous", "Next →"];
  return html`<div class="table-wrap"><table class="cards job-cards">
    <caption class="muted" style="text-align:left;padding:8px 10px">Jobs ${int(offset + 1)}–${int(end)} of ${total}, ${order}</caption>
    <thead><tr>${th("id", "num")}${th("name")}${th("status")}<th scope="col">Progress</th>
      ${th("track", "hide-sm")}${th("schedule", "hide-sm")}${th("time_saving", "num")}
      ${th("acc_delta", "num")}${th("verdict")}${th("created", "hide-sm")}</tr></thead>
    <tbody>${rows}</tbody></table></div>
    <nav class="pager" aria-label="Pages of jobs">
      ${pageNo > 1 ? html`<a class="btn" href="${link(pageNo - 1, trail[pageNo - 1])}" rel="prev">${newer}</a>` : html`<span class="btn" aria-disabled="true" style="opacity:.45">${newer}</span>`}
      <span class="muted">Page ${int(pageNo)}${page.count_exact === false ? "" : html` of ${int(Math.max(1, Math.ceil(page.count / PAGE)))}`}</span>
      ${page.next_cursor ? html`<a class="btn" href="${link(pageNo + 1, page.next_cursor)}" rel="next">${older}</a>` : html`<span class="btn" aria-disabled="true" style="opacity:.45">${older}</span>`}
    </nav>`;
}
