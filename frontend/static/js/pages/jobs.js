// Jobs: every job with its state, live progress and (when done) time saving and accuracy delta.
import { get, meta } from "../api.js";
import { html, raw, pct, pt, when, signClass, int } from "../format.js";
import { statusBadge, kindDot, markRendered, loadingBox, emptyBox, errorBox, STATUSES, ACTIVE, setHashQuery, verdictBadge, noisyBadge } from "../common.js";

const PAGE = 50;
const POLL_MS = 2000;
const FILTERS = ["status", "arch", "dataset", "schedule_kind", "q"];

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
      <div class="field"><label for="f-q">Search</label><input id="f-q" name="q" type="search" placeholder="name or track"></div>
      <div class="field actions"><button type="reset" class="btn">Clear filters</button></div>
    </form>
    <div id="jobs-table" aria-live="polite">${loadingBox("jobs")}</div>`);
  state = { root, query: {}, timer: null, seq: 0 };
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
  let typing = null;
  form.addEventListener("input", (e) => {
    clearTimeout(typing);
    typing = setTimeout(() => applyFilters(form), e.target.name === "q" ? 300 : 0);
  });
  form.addEventListener("submit", (e) => { e.preventDefault(); applyFilters(form); });
  form.addEventListener("reset", () => setTimeout(() => applyFilters(form), 0));
  update(root, { query });
  return () => { clearTimeout(state.timer); state = null; };
}

function applyFilters(form) {
  const q = {};
  for (const k of FILTERS) if (form.elements[k].value) q[k] = form.elements[k].value;
  setHashQuery("jobs", q);
}

export function update(root, { query }) {
  state.query = query;
  const form = root.querySelector("#job-filters");
  for (const k of FILTERS) if (form.elements[k] && document.activeElement !== form.elements[k]) form.elements[k].value = query[k] || "";
  load(true);
}

async function load(first) {
  if (!state) return;
  clearTimeout(state.timer);
  const seq = ++state.seq;
  const offset = Math.max(0, parseInt(state.query.offset || "0", 10) || 0);
  const box = state.root.querySelector("#jobs-table");
  let page;
  try {
    page = await get("/jobs", { ...Object.fromEntries(FILTERS.map((k) => [k, state.query[k]])), limit: PAGE, offset, order: "-created_at" });
  } catch (err) {
    if (!state || seq !== state.seq) return;
    box.innerHTML = String(errorBox(err));
    markRendered("jobs");
    return;
  }
  if (!state || seq !== state.seq) return;
  box.innerHTML = String(table(page, offset));
  if (first) markRendered("jobs");
  // Live progress: poll while anything on this page can still change.
  if (page.data.some((j) => ACTIVE.has(j.status))) state.timer = setTimeout(() => load(false), POLL_MS);
}

function progressCell(j) {
  const p = j.progress;
  if (j.status === "running" && p) {
    const frac = Math.max(0, Math.min(1, p.fraction || 0));
    const run = p.run === "dynds" ? "DynDS" : p.run === "equal_time" ? "equal-time" : p.run || "";
    return html`<div class="progress" title="${run} run, epoch ${(p.epoch ?? 0) + 0}/${p.epochs ?? "?"}, step ${p.step ?? 0}/${p.total_steps ?? "?"}">
      <div class="bar" role="progressbar" aria-label="progress of job ${j.id}" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${Math.round(frac * 100)}"><span style="width:${(frac * 100).toFixed(1)}%"></span></div>
      <span class="muted">${pct(frac, 0)}${run ? ` · ${run}` : ""}</span></div>`;
  }
  if (j.status === "running") return html`<span class="muted">starting…</span>`;
  if (j.status === "queued") return html`<span class="muted">${j.cancel_requested ? "cancelling" : "waiting"}</span>`;
  if (j.status === "failed") return html`<span class="neg">${(j.error || "failed").split("\n")[0].slice(0, 60)}</span>`;
  if (j.status === "cancelled") return html`<span class="muted">stopped</span>`;
  return html`<span class="muted">done</span>`;
}

/** Words for a figure a job does not have (yet). */
function absentWords(j, what) {
  if (j.status === "succeeded") return what;
  if (ACTIVE.has(j.status)) return "not finished";
  return "not run";
}

function table(page, offset) {
  const filtered = FILTERS.some((k) => state.query[k]);
  if (!page.data.length) {
    return filtered
      ? emptyBox("No jobs match these filters.", " ", '<a href="#/jobs">Show all jobs</a>')
      : emptyBox("No jobs yet.", " Submit a spec to start training.", '<a class="btn btn-primary" href="#/submit">Submit a job</a>');
  }
  const rows = page.data.map((j) => {
    const s = j.summary || {};
    const done = j.status === "succeeded";
    const noBase = absentWords(j, "no baseline");
    return html`<tr${done && s.timing_noisy ? raw(' class="noisy-row"') : ""}>
      <td data-label="Job" class="num"><a href="#/jobs/${j.id}">#${j.id}</a></td>
      <td data-label="Name" class="wrap"><a href="#/jobs/${j.id}">${j.name}</a>${j.attempt > 1 ? html` <span class="muted">(attempt ${j.attempt})</span>` : ""}</td>
      <td data-label="Status">${statusBadge(j.status)}</td>
      <td data-label="Progress">${progressCell(j)}</td>
      <td data-label="Track" class="hide-sm">${j.track}</td>
      <td data-label="Schedule" class="hide-sm">${kindDot(j.schedule_kind)}${j.schedule_kind}</td>
      <td data-label="Time saving" class="num ${signClass(s.time_saving)}">${done && s.timing_noisy ? html`${noisyBadge("timing noisy: the paired and interleaved time savings disagree, or the full steps varied; open the job for the reason")} ` : ""}${pct(s.time_saving, 1, noBase)}</td>
      <td data-label="Acc. Δ" class="num ${signClass(s.acc_delta)}">${pt(s.acc_delta, 2, noBase)}</td>
      <td data-label="Verdict">${done ? (s.verdict ? verdictBadge(s.verdict) : html`<span class="muted">no verdict</span>`) : html`<span class="muted">${absentWords(j, "")}</span>`}</td>
      <td data-label="Created" class="hide-sm">${when(j.created_at)}</td></tr>`;
  });
  const end = offset + page.data.length;
  const prev = Math.max(0, offset - PAGE);
  const q = { ...state.query };
  const link = (off) => "#/jobs?" + new URLSearchParams({ ...q, offset: off }).toString();
  return html`<div class="table-wrap"><table class="cards">
    <caption class="muted" style="text-align:left;padding:8px 10px">Jobs ${int(offset + 1)}–${int(end)} of ${int(page.count)}, newest first</caption>
    <thead><tr><th class="num" scope="col">Job</th><th scope="col">Name</th><th scope="col">Status</th><th scope="col">Progress</th>
      <th class="hide-sm" scope="col">Track</th><th class="hide-sm" scope="col">Schedule</th><th class="num" scope="col">Time saving</th>
      <th class="num" scope="col">Acc. Δ</th><th scope="col">Verdict</th><th class="hide-sm" scope="col">Created</th></tr></thead>
    <tbody>${rows}</tbody></table></div>
    <nav class="pager" aria-label="Pages of jobs">
      ${offset > 0 ? html`<a class="btn" href="${link(prev)}" rel="prev">← Newer</a>` : raw('<span class="btn" aria-disabled="true" style="opacity:.45">← Newer</span>')}
      <span class="muted">Page ${int(Math.floor(offset / PAGE) + 1)} of ${int(Math.max(1, Math.ceil(page.count / PAGE)))}</span>
      ${end < page.count ? html`<a class="btn" href="${link(offset + PAGE)}" rel="next">Older →</a>` : raw('<span class="btn" aria-disabled="true" style="opacity:.45">Older →</span>')}
    </nav>`;
}
