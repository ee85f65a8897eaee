// Job: the spec, live curves of the DynDS run and its baselines, time split, FLOPs, the hardware it ran on,
// reproducibility.
import { get, post, meta, followEvents } from "../api.js";
import { html, raw, pct, pctOf, pt, secs, gflops, int, when, duration, signClass, esc } from "../format.js";
import { statusBadge, kindDot, markRendered, loadingBox, errorBox, ACTIVE, RUN_STYLES, VERDICTS, verdictBadge, noisyBadge, contendedBadge, jobProgressBar } from "../common.js";
import { hardwareBadge, hardwareRows, contentionWords, UNKNOWN_HARDWARE } from "../hardware.js";
import { shapeCurves, lineChart, setSeries, smoothCurves } from "../curves.js";
import { overallProgress, phaseWords } from "../progress.js";
import { apiUrl, getToken } from "../api.js";

const RUN_LABEL = { dynds: "DynDS", baseline: "Baseline", equal_time: "Equal-time baseline" };
// The loss chart's smoothing: [EMA weight, words]; 0 draws every step as recorded.
const SMOOTHING = [[0, "none"], [0.6, "light (EMA 0.6)"], [0.9, "medium (EMA 0.9)"], [0.98, "strong (EMA 0.98)"]];
// What the equal-time run's length came from (JobResult.equal_time_sizing).
const SIZED_BY = { lockstep_baseline: "lockstep baseline's steps", own_full_steps: "own full steps", paired_baseline: "baseline run", flop_ratio: "FLOP ratio" };
// How the DynDS run and its paired baseline were timed (JobResult.pairing).
export const PAIRING = {
  lockstep: "the DynDS run and its baseline alternated step by step in one process, so both saw the same machine at the same time",
  sequential: "the baseline ran after the DynDS run (one after the other), so a change in the machine's load between them shows up in the time saving",
};

export function render(root, { params }) {
  const id = Number(params[0]);
  const st = { id, job: null, points: [], seen: new Set(), cursor: null, axis: "time", smooth: 0, charts: {}, stop: null, dirty: false, raf: null, alive: true,
    logSeen: new Set(), logCursor: 0, logTimer: null };
  root.innerHTML = String(loadingBox(`job #${id}`));
  start(root, st);
  return () => {
    st.alive = false;
    st.stop && st.stop();
    clearTimeout(st.logTimer);
    cancelAnimationFrame(st.raf);
    Object.values(st.charts).forEach((c) => c.destroy());
  };
}

async function start(root, st) {
  try {
    // The defaults (GET /meta, asked for by the page frame already) let the spec show what differs from them.
    const [job, m] = await Promise.all([get(`/jobs/${st.id}`), meta().catch(() => null)]);
    st.job = job;
    st.defaults = (m && m.defaults) || null;
  } catch (err) {
    root.innerHTML = String(err.status === 404
      ? html`<div class="empty"><strong>Job #${st.id} does not exist.</strong><a href="#/jobs">Back to the jobs list</a></div>`
      : errorBox(err));
    markRendered("job");
    return;
  }
  if (!st.alive) return;
  layout(root, st);
  followLogs(root, st);
  try {
    await fetchMetrics(st);
  } catch (err) {
    root.querySelector("#curves-msg").innerHTML = String(errorBox(err));
  }
  if (!st.alive) return;
  drawCharts(root, st);
  markRendered("job");
  if (ACTIVE.has(st.job.status)) follow(root, st);
}

async function fetchMetrics(st) {
  for (let guard = 0; guard < 1000; guard++) {
    const page = await get(`/jobs/${st.id}/metrics`, { after: st.cursor ?? undefined, limit: 1000 });
    addPoints(st, page.data || []);
    if (!page.data || !page.data.length || page.next_cursor === null || page.next_cursor === undefined || page.next_cursor === st.cursor) {
      if (page.next_cursor !== null && page.next_cursor !== undefined) st.cursor = page.next_cursor;
      break;
    }
    st.cursor = page.next_cursor;
  }
}

function addPoints(st, pts) {
  for (const p of pts) {
    if (p.id !== undefined && st.seen.has(p.id)) continue;
    if (p.id !== undefined) st.seen.add(p.id);
    st.points.push(p);
    st.dirty = true;
  }
}

function follow(root, st) {
  const lastId = st.points.reduce((m, p) => (p.id > m ? p.id : m), st.cursor ?? -1);
  st.stop = followEvents(`/jobs/${st.id}/events`, {
    lastEventId: lastId >= 0 ? lastId : null,
    onEvent: async (ev) => {
      if (!st.alive) return;
      if (ev.event === "metric" && ev.data) { addPoints(st, [ev.data]); scheduleDraw(root, st); }
      else if (ev.event === "status" && ev.data) { st.job = { ...st.job, ...ev.data }; refresh(root, st); }
      else if (ev.event === "end") {
        st.stop && st.stop();
        try { st.job = await get(`/jobs/${st.id}`); await fetchMetrics(st); } catch { /* keep what we have */ }
        if (st.alive) { refresh(root, st); scheduleDraw(root, st); }
      }
    },
    onError: (err) => { st.live = `live updates interrupted (${err.message}); reconnecting…`; const m = root.querySelector("#live-state"); if (m) m.textContent = st.live; },
    onOpen: () => { st.live = "live"; const m = root.querySelector("#live-state"); if (m) m.textContent = st.live; },
  });
}

function scheduleDraw(root, st) {
  if (st.raf) return;
  // Coalesce bursts of metric events into one redraw per frame.
  st.raf = requestAnimationFrame(() => { st.raf = null; if (st.alive && st.dirty) drawCharts(root, st); });
}

function layout(root, st) {
  root.innerHTML = String(html`
    <div class="page-head" id="job-head"></div>
    <div id="job-alerts"></div>
    <div id="job-verdict"></div>
    <div id="job-summary"></div>
    <section class="panel" aria-labelledby="curves-title">
      <div class="page-head" style="margin-bottom:8px">
        <div><h2 id="curves-title">Training curves</h2><p class="muted" id="curves-note"></p></div>
        <div class="segmented" role="group" aria-label="x axis">
          <button type="button" data-axis="time" aria-pressed="true">vs train time</button>
          <button type="button" data-axis="steps" aria-pressed="false">vs steps</button>
        </div>
      </div>
      <div id="curves-msg"></div>
      <div class="grid grid-2">
        <figure style="margin:0"><div class="chart-head"><figcaption class="muted" id="loss-caption">Training loss (per step)</figcaption>
          <span class="chart-control"><label for="loss-smooth">Smoothing</label><select id="loss-smooth" aria-describedby="loss-caption">
            ${SMOOTHING.map(([v, words]) => html`<option value="${v}">${words}</option>`)}</select></span></div><div class="chart-box"><canvas id="chart-loss" role="img" aria-label="training loss of each run"></canvas><p class="chart-empty" id="empty-loss">No training steps recorded yet</p></div></figure>
        <figure style="margin:0"><figcaption class="muted">Validation accuracy (per epoch)</figcaption><div class="chart-box"><canvas id="chart-acc" role="img" aria-label="validation accuracy of each run"></canvas><p class="chart-empty" id="empty-acc">No epoch finished yet</p></div></figure>
      </div>
    </section>
    <section class="panel" aria-labelledby="logs-title" id="logs-panel">
      <h2 id="logs-title">Logs</h2><p class="muted" id="logs-note">Loading the job's log…</p>
      <div id="job-logs" role="log" aria-label="the job's log lines" tabindex="0"
        style="max-height:320px;overflow:auto;font-family:var(--mono);font-size:.82rem;line-height:1.4;background:var(--bg);border:1px solid var(--border);border-radius:6px;padding:6px 8px"></div>
    </section>
    <div id="job-details"></div>
    <dialog id="cancel-dialog" aria-labelledby="cancel-title" aria-describedby="cancel-text">
      <form method="dialog">
        <h2 id="cancel-title">Cancel job #${st.id}?</h2>
        <p id="cancel-text">Training stops at its next step and the job ends as cancelled. Retry starts a new attempt from the beginning.</p>
        <div class="actions">
          <button type="submit" class="btn btn-danger" value="confirm" id="cancel-confirm">Cancel the job</button>
          <button type="submit" class="btn" value="keep" id="cancel-keep" autofocus>Keep it running</button>
        </div>
      </form>
    </dialog>`);
  const dialog = root.querySelector("#cancel-dialog");
  // A real confirm step: nothing is sent until the dialog's own Cancel button is pressed.
  dialog.addEventListener("close", () => { if (dialog.returnValue === "confirm") act(root, st, "cancel"); });
  root.querySelector("#loss-smooth").addEventListener("change", (e) => {
    st.smooth = Number(e.target.value) || 0;
    st.dirty = true;
    drawCharts(root, st);
  });
  root.querySelectorAll("[data-axis]").forEach((b) => b.addEventListener("click", () => {
    st.axis = b.dataset.axis;
    root.querySelectorAll("[data-axis]").forEach((x) => x.setAttribute("aria-pressed", String(x === b)));
    st.dirty = true;
    drawCharts(root, st);
  }));
  refresh(root, st);
}

function drawCharts(root, st) {
  st.dirty = false;
  if (!st.charts.loss) {
    st.charts.loss = lineChart(root.querySelector("#chart-loss"), { yTitle: "loss", axis: st.axis });
    st.charts.acc = lineChart(root.querySelector("#chart-acc"), { yTitle: "val. accuracy (%)", axis: st.axis });
  }
  const curves = shapeCurves(st.points, st.axis);
  setSeries(st.charts.loss, st.smooth ? smoothCurves(curves, "loss", st.smooth) : curves, "loss", st.axis);
  root.querySelector("#loss-caption").textContent = st.smooth
    ? `Training loss (per step, smoothed: exponential moving average, weight ${st.smooth})` : "Training loss (per step)";
  setSeries(st.charts.acc, curves, "val_acc", st.axis, { points: true });
  updateNote(root, st);
  for (const [id, chart] of [["loss", st.charts.loss], ["acc", st.charts.acc]]) {
    const hint = root.querySelector(`#empty-${id}`);
    if (hint) hint.hidden = chart.data.datasets.length > 0;
  }
}

function updateNote(root, st) {
  const nSteps = st.points.filter((p) => p.kind === "step").length;
  const nEpochs = st.points.filter((p) => p.kind === "epoch").length;
  const note = root.querySelector("#curves-note");
  const widest = st.points.reduce((w, p) => (p.kind === "step" && p.values && p.values.n > w ? p.values.n : w), 1);
  const buckets = widest > 1 ? ` (long runs in buckets of up to ${int(widest)} steps: their mean, shaded from min to max)` : "";
  note.textContent = st.points.length
    ? `${int(nSteps)} step points${buckets}, ${int(nEpochs)} epoch points${ACTIVE.has(st.job.status) ? " · updating live" : ""}`
    : st.job.status === "queued" ? "Curves appear here once the job starts." : "No metrics were recorded for this job.";
}

function refresh(root, st) {
  const j = st.job;
  const canCancel = ACTIVE.has(j.status) && !j.cancel_requested;
  const canRetry = j.status === "failed" || j.status === "cancelled";
  root.querySelector("#job-head").innerHTML = String(html`
    <div>
      <p class="muted" style="margin:0"><a href="#/jobs">Jobs</a> / #${j.id}</p>
      <h1>${j.name} ${statusBadge(j.status)}${noisy(j) ? html` ${noisyBadge(timingNoise(j))}` : ""}${contended(j) ? html` ${contendedBadge(contention(j))}` : ""}</h1>
      <p class="muted">${kindDot(j.schedule_kind)}${j.schedule_kind} schedule · track <a href="#/leaderboard?track=${encodeURIComponent(trackRef(j))}">${j.track}</a>${j.hardware_key ? html` on ${hardwareBadge(j.hardware_key)}` : ""}
        · attempt ${j.attempt}${j.retry_of ? html` (retry of <a href="#/jobs/${j.retry_of}">#${j.retry_of}</a>)` : ""}
        ${ACTIVE.has(j.status) ? html` · <span id="live-state" role="status">${st.live || "connecting…"}</span>` : ""}</p>
    </div>
    <div class="actions">
      <button type="button" class="btn btn-danger" id="cancel-btn" ${raw(canCancel ? "" : "disabled")}>${j.cancel_requested && ACTIVE.has(j.status) ? "Cancelling…" : "Cancel"}</button>
      <button type="button" class="btn" id="retry-btn" ${raw(canRetry ? "" : "disabled")}>Retry</button>
      <a class="btn btn-ghost" href="#/submit?from=${j.id}">Edit as new</a>
    </div>`);
  root.querySelector("#cancel-btn").onclick = () => {
    const dialog = root.querySelector("#cancel-dialog");
    dialog.returnValue = "";  // some browsers keep the last answer on Escape: a stale "confirm" must not cancel
    dialog.showModal();
  };
  // The job ended while the question was open: nothing is left to cancel.
  if (!canCancel && root.querySelector("#cancel-dialog").open) root.querySelector("#cancel-dialog").close("keep");
  root.querySelector("#retry-btn").onclick = () => act(root, st, "retry");

  const alerts = [];
  if (j.status === "failed") alerts.push(errorWords(j.error));
  if (j.status === "cancelled") alerts.push(html`<div class="alert warn">This job was cancelled${j.finished_at ? ` ${when(j.finished_at)}` : ""}. Retry starts a new attempt; this one is kept.</div>`);
  if (j.deduplicated) alerts.push(html`<div class="alert info">An identical spec already existed, so this job was reused instead of training again.</div>`);
  root.querySelector("#job-alerts").innerHTML = alerts.map(String).join("");
  root.querySelector("#job-verdict").innerHTML = String(verdictPanel(j));
  root.querySelector("#job-summary").innerHTML = String(summary(j));
  root.querySelector("#job-details").innerHTML = String(details(j, st.defaults));
  weightsLine(root, st);
  if (root.querySelector("#curves-note") && st.charts.loss) updateNote(root, st);
}

// ---------------------------------------------------------------- logs (GET /jobs/{id}/logs)

const LOG_POLL_MS = 2000;
const LOG_PAGE = 1000;
const LEVEL_STYLE = {
  CRITICAL: "color:var(--bad);font-weight:600", ERROR: "color:var(--bad)", WARNING: "color:var(--warn)", INFO: "", DEBUG: "color:var(--muted)",
};

/** New log lines, then again every LOG_POLL_MS while the job is queued or running (and twice after it ends: its last lines). */
async function followLogs(root, st) {
  if (!st.alive) return;
  try {
    for (let guard = 0; guard < 100; guard++) {
      const page = await get(`/jobs/${st.id}/logs`, { after: st.logCursor || undefined, limit: LOG_PAGE });
      if (!st.alive) return;
      const lines = page.data || [];
      appendLogs(root, st, lines);
      if (page.next_cursor !== null && page.next_cursor !== undefined) st.logCursor = page.next_cursor;
      if (lines.length < LOG_PAGE) break;
    }
    st.logError = null;
  } catch (err) {
    st.logError = err.message;
  }
  if (!st.alive) return;
  const active = ACTIVE.has(st.job.status);
  if (active) st.logFollowed = true;
  noteLogs(root, st, active);
  if (active || (st.logFollowed && (st.logTail = (st.logTail || 0) + 1) <= 2)) {
    st.logTimer = setTimeout(() => followLogs(root, st), LOG_POLL_MS);
  }
}

function appendLogs(root, st, lines) {
  const box = root.querySelector("#job-logs");
  if (!box || !lines.length) return;
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
  for (const line of lines) {
    if (st.logSeen.has(line.seq)) continue;
    st.logSeen.add(line.seq);
    const row = document.createElement("div");
    row.className = "log-line";
    row.dataset.level = line.level;
    row.dataset.seq = String(line.seq);
    row.style.cssText = `white-space:pre-wrap;word-break:break-word;${LEVEL_STYLE[line.level] || ""}`;
    const time = document.createElement("span");
    time.className = "muted";
    time.textContent = line.created_at ? new Date(line.created_at).toLocaleTimeString() : "";
    const level = document.createElement("strong");
    level.textContent = ` ${line.level} `;
    row.append(time, level, document.createTextNode(`${line.logger}: ${line.message}`));
    box.append(row);
  }
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function noteLogs(root, st, active) {
  const note = root.querySelector("#logs-note");
  if (!note) return;
  const n = st.logSeen.size;
  note.textContent = st.logError ? `Cannot load the log: ${st.logError}`
    : n ? `${int(n)} line${n === 1 ? "" : "s"} (INFO and above)${active ? " · following" : ""}`
    : st.job.status === "queued" ? "Log lines appear here once a worker starts the job."
    : active ? "No log lines yet · following" : "No log lines were stored for this job.";
}

// ---------------------------------------------------------------- model weights and step archive (GET /jobs/{id}/artifacts)

const bytes = (n) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(1)} kB`);

/** A succeeded job's "Model weights" line at the top of its details: size, sha256, a download link; and
 * for any job that ended, its "Every step" line: the Parquet archive of all its steps, when it has one. */
function weightsLine(root, st) {
  if (ACTIVE.has(st.job.status)) return;
  const show = () => {
    const box = root.querySelector("#job-details");
    if (!box || !st.weights) return;
    box.querySelector("#job-weights")?.remove();
    box.querySelector("#job-steps")?.remove();
    box.insertAdjacentHTML("afterbegin", String(stepsHtml(st)));
    if (st.job.status === "succeeded") box.insertAdjacentHTML("afterbegin", String(weightsHtml(st)));
    for (const id of ["#weights-download", "#steps-download"]) {
      const link = box.querySelector(id);
      if (link) link.onclick = (ev) => downloadWithToken(ev, link);
    }
  };
  if (st.weights !== undefined) return show();
  st.weights = null;  // loading
  // The step archive is recorded just after the job ends: a page that saw it end looks once more, a moment later.
  const load = (again) => get(`/jobs/${st.id}/artifacts`)
    .then((r) => { st.weights = r; }, (err) => { st.weights = { error: err.message }; })
    .then(() => {
      if (!st.alive) return;
      show();
      if (again && st.weights.data && !st.weights.data.some((a) => a.name === "steps.parquet")) setTimeout(() => load(false), 3000);
    });
  load(true);
}

function weightsHtml(st) {
  const w = st.weights;
  const model = w.data && w.data.find((a) => a.name === "model.pt");
  const body = w.error ? html`<span class="muted">cannot be listed: ${w.error}</span>`
    : !model ? html`<span class="muted">not stored for this job (over the server's size limit, deleted by retention, or trained before the server kept weights)</span>`
    : html`<a id="weights-download" href="${apiUrl(`/jobs/${st.id}/artifacts/model.pt`)}" download="job-${st.id}-model.pt">model.pt</a>
      · ${bytes(model.size_bytes)} · sha256 <code class="mono" style="overflow-wrap:anywhere">${model.sha256}</code>
      <span class="muted">· loads into <code>create_model(${JSON.stringify(model.recipe.arch)}, num_classes=${model.recipe.num_classes}, in_channels=${model.recipe.in_channels}, small_input=${model.recipe.small_input ? "True" : "False"})</code></span>`;
  return html`<section class="panel" id="job-weights" aria-label="model weights" style="margin-bottom:12px"><strong>Model weights:</strong> ${body}</section>`;
}

function stepsHtml(st) {
  const a = st.weights.data && st.weights.data.find((x) => x.name === "steps.parquet");
  if (!a) return "";
  const rows = a.recipe && a.recipe.rows;
  return html`<section class="panel" id="job-steps" aria-label="every step" style="margin-bottom:12px"><strong>Every step:</strong>
    <a id="steps-download" href="${apiUrl(`/jobs/${st.id}/artifacts/steps.parquet`)}" download="job-${st.id}-steps.parquet">steps.parquet</a>
    · ${bytes(a.size_bytes)}${rows ? html` · ${int(rows)} steps` : ""}
    <span class="muted">· Parquet (loss, accuracy, learning rate, batch type, step time of each step; the curves above keep at most a few thousand points per run): <code>pandas.read_parquet("job-${st.id}-steps.parquet")</code></span></section>`;
}

/** With an API token set, a plain link would go without it: fetch with the token, then save the bytes. */
async function downloadWithToken(ev, link) {
  const token = getToken();
  if (!token) return;  // an open server: the browser follows the link itself
  ev.preventDefault();
  const resp = await fetch(link.href, { headers: { Authorization: `Bearer ${token}` } });
  if (!resp.ok) { link.insertAdjacentText("afterend", ` (download refused: ${resp.status})`); return; }
  const url = URL.createObjectURL(await resp.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = link.getAttribute("download");
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A failed job's error in words: the last line of a traceback up front, the rest folded away. */
export function errorWords(error) {
  const text = (error || "The job failed without an error message.").trim();
  const lines = text.split("\n").filter((l) => l.trim());
  const headline = lines.length > 1 && /Traceback/.test(text) ? lines[lines.length - 1] : lines[0];
  const rest = lines.length > 1;
  return html`<div class="alert error" role="alert"><strong>The job failed:</strong> ${headline}
    ${rest ? html`<details><summary>Full error</summary><pre>${text}</pre></details>` : ""}</div>`;
}

async function act(root, st, what) {
  const btn = root.querySelector(what === "cancel" ? "#cancel-btn" : "#retry-btn");
  btn.disabled = true;
  try {
    const { data } = await post(`/jobs/${st.id}/${what}`);
    if (what === "retry") { location.hash = `#/jobs/${data.id}`; return; }
    st.job = { ...st.job, ...data };
    refresh(root, st);
  } catch (err) {
    root.querySelector("#job-alerts").insertAdjacentHTML("afterbegin", String(errorBox(err)));
    btn.disabled = false;
  }
}

const noisy = (j) => !!((j.result && j.result.timing_noisy) || (j.summary && j.summary.timing_noisy));
const timingNoise = (j) => (j.result && j.result.timing_noise) || "the timing of this job cannot be trusted";
const has = (v) => v !== null && v !== undefined && !Number.isNaN(v);
const contended = (j) => !!((j.result && j.result.contended) || (j.summary && j.summary.contended));
const contention = (j) => (j.result && j.result.contention) || "no reason was recorded";
/** The job's leaderboard track: its recipe on the hardware it ran on (a track key), else its recipe's label. */
const trackRef = (j) => (j.recipe_hash && j.hardware_key ? `${j.recipe_hash}@${j.hardware_key}` : j.track);

/** The verdict in words, how the timing was paired, and whether the timing can be trusted. */
function verdictPanel(j) {
  if (j.status !== "succeeded") return "";
  const r = j.result || {};
  const kind = r.verdict || (j.summary && j.summary.verdict) || null;
  const v = VERDICTS[kind];
  const sentence = r.verdict_sentence
    ? html`<p class="verdict-sentence" id="verdict-sentence">${r.verdict_sentence}</p>`
    : html`<p class="verdict-sentence muted" id="verdict-sentence">No verdict was recorded for this job (it ran before the server judged results). Its figures are below.</p>`;
  const pairing = r.pairing
    ? html`<p class="timing-line" id="pairing"><strong>Timing: ${r.pairing}</strong> — ${PAIRING[r.pairing] || "as recorded by the worker"}.</p>`
    : html`<p class="timing-line muted" id="pairing"><strong>Timing: pairing not recorded</strong>${r.baseline ? " — this job's result does not say how its baseline was timed." : " — no paired baseline ran."}</p>`;
  const noise = noisy(j)
    ? html`<p class="timing-line" id="timing-noise" style="margin-top:6px">${noisyBadge(timingNoise(j))} <strong>Do not trust the time saving of this job:</strong> ${timingNoise(j)}. Noisy jobs are left out of the leaderboard's ranking unless asked for.</p>`
    : html`<p class="timing-line muted" id="timing-noise" style="margin-top:4px">Timing looks steady: the paired and the cross-check time savings agree and the full steps took a steady time.</p>`;
  const shared = contended(j)
    ? html`<p class="timing-line" id="contention" style="margin-top:6px">${contendedBadge(contention(j))} <strong>The job did not have its hardware to itself:</strong> ${contention(j)}. Its time saving is not its hardware's; contended jobs are left out of the leaderboard's ranking unless asked for.</p>`
    : r.hardware ? html`<p class="timing-line muted" id="contention" style="margin-top:4px">Hardware to itself: nothing starved its training threads while they stepped.</p>` : "";
  return html`<section class="panel verdict-panel ${v ? v.cls : "v-none"}" aria-labelledby="verdict-title" id="verdict-panel">
    <h2 id="verdict-title">Worth it? ${kind ? verdictBadge(kind, r.verdict_sentence) : ""}</h2>
    ${sentence}${pairing}${noise}${shared}
    <p class="muted" style="margin:8px 0 0;font-size:.85rem">One job is one seed. The verdict compares DynDS with the baseline trained for the same time (the equal-time baseline): that is what you would do instead.</p>
  </section>`;
}

function stat(label, value, cls = "", explain = "", words = false) {
  return html`<div class="stat"><span class="value ${cls}${words ? " words" : ""}">${value}</span><span class="label">${label}</span>${explain ? html`<span class="explain">${explain}</span>` : ""}</div>`;
}

function summary(j) {
  const s = j.summary || {};
  const r = j.result || {};
  const p = j.progress;
  const parts = [];
  const o = j.status === "running" ? overallProgress(j.spec, p) : null;
  if (o) {
    // One bar over every run the job trains (the API's fraction is the current run's and restarts for each).
    const frac = o.fraction;
    parts.push(html`<section class="panel" aria-label="progress"><div class="progress" id="job-progress">
      ${jobProgressBar(o, "progress of the whole job")}
      <span><strong>${pct(frac, 0)}</strong> of the job · ${phaseWords(o)} (${pct(o.runFraction, 0)}) · epoch ${Math.min((p.epoch ?? 0) + 1, p.epochs ?? Infinity)} of ${p.epochs ?? "?"} · step ${int(p.step)} of ${int(p.total_steps)}</span></div></section>`);
  }
  if (j.status === "succeeded" || Object.values(s).some((v) => v !== null && v !== undefined)) {
    const ts = has(r.time_saving) ? r.time_saving : s.time_saving;
    const tsi = has(r.time_saving_interleaved) ? r.time_saving_interleaved : s.time_saving_interleaved;
    const tst = r.time_saving_total; // lockstep only: the clock's figure beside the steps-paired one
    const noBase = "no baseline ran";
    const sized = SIZED_BY[r.equal_time_sizing] ? ` (sized by ${SIZED_BY[r.equal_time_sizing]})` : "";
    const tiles = [
      stat(`time saving (${r.pairing || "pairing not recorded"}, vs paired baseline)`, pct(ts, 1, noBase), signClass(ts),
        has(tst) ? "1 − DynDS train time ÷ its paired baseline's, from each DynDS step against the baseline's steps around it (median per batch type)"
          : "1 − DynDS train time ÷ its paired baseline's train time", !has(ts)),
      ...(has(tst) ? [stat("total-time saving (the clock)", pct(tst, 1), signClass(tst),
        "the same ratio from the two runs' total train times; far from the time saving when a burst of load hit part of the job")] : []),
      stat("cross-check: vs its own full steps", pct(tsi, 1, "not measured"), signClass(tsi),
        has(tsi) ? "1 − DynDS train time ÷ (its own full-step time × its steps); should agree with the time saving" : "needs both full and reduced steps in the DynDS run", !has(tsi)),
      stat("accuracy Δ vs baseline", pt(s.acc_delta, 2, noBase), signClass(s.acc_delta), "DynDS − baseline final val. accuracy, in percentage points (pt)", !has(s.acc_delta)),
      stat("FLOP saving", pct(s.flop_saving, 1, noBase), signClass(s.flop_saving), "1 − DynDS training FLOPs ÷ the baseline's", !has(s.flop_saving)),
      stat("gap to equal-time baseline" + sized, pt(s.equal_time_gap, 2, "no equal-time baseline"), signClass(s.equal_time_gap),
        has(s.equal_time_gap) ? "DynDS − the baseline trained for the same time, in pt; above 0: DynDS is worth it" : "set equal_time_baseline: true to get it", !has(s.equal_time_gap)),
      stat("DynDS val. accuracy", pctOf(s.dynds_acc, 1, "not recorded"), "", "final validation accuracy", !has(s.dynds_acc)),
      stat("baseline val. accuracy", pctOf(s.baseline_acc, 1, noBase), "", "final validation accuracy, full budget", !has(s.baseline_acc)),
      stat("equal-time val. accuracy", pctOf(s.equal_time_acc, 1, "not run"), "", "the baseline cut to DynDS's train time", !has(s.equal_time_acc)),
      stat("DynDS train time", secs(s.dynds_time_s, "not recorded"), "", "optimizer steps only (no evaluation)", !has(s.dynds_time_s)),
      stat("baseline train time", secs(s.baseline_time_s, noBase), "", "optimizer steps only (no evaluation)", !has(s.baseline_time_s)),
    ];
    parts.push(html`<section class="panel" aria-label="headline figures"><div class="stats tiles" id="headline-stats" style="${tileStyle(tiles.length)}">
      ${tiles}
    </div></section>`);
  }
  return html`${parts}`;
}

/**
 * Columns for n tiles that leave none alone on a row: the most (up to max) that fill every row, else the
 * most whose last row holds two or more. tileColumns(10, 6) -> 5; tileColumns(10, 2) -> 2; tileColumns(7, 4) -> 4.
 */
export function tileColumns(n, max) {
  const options = [];
  for (let c = Math.min(max, n); c >= 2; c--) options.push(c);
  return options.find((c) => n % c === 0) || options.find((c) => n % c !== 1) || 1;
}
const tileStyle = (n) => `--tile-cols:${tileColumns(n, 5)};--tile-cols-mid:${tileColumns(n, 3)};--tile-cols-sm:${tileColumns(n, 2)}`;

function runsOf(j) {
  const r = j.result;
  if (!r) return [];
  return ["dynds", "baseline", "equal_time"].filter((k) => r[k]).map((k) => [k, r[k]]);
}

/** Why a job shows no per-run figures, in words that fit its state. */
function noRunsWords(j) {
  if (ACTIVE.has(j.status)) return "Shown when the job has finished.";
  if (j.status === "failed") return "None: the job failed before any run finished.";
  if (j.status === "cancelled") return "None: the job was cancelled before any run finished.";
  return "Not recorded in this job's result.";
}

function timeSplit(j) {
  const runs = runsOf(j);
  if (!runs.length) return html`<p class="muted">${noRunsWords(j)}</p>`;
  const absent = ["baseline", "equal_time"].filter((k) => !j.result[k]);
  return html`${runs.map(([k, r]) => {
    if (!r.steps) return html`<div style="margin-bottom:10px"><strong>${RUN_LABEL[k]}</strong> <span class="muted">· did not run${r.cancelled || j.status === "cancelled" ? " (cancelled first)" : ""}</span></div>`;
    const total = (r.time_full_s || 0) + (r.time_reduced_s || 0);
    const f = total ? r.time_full_s / total : 0;
    return html`<div style="margin-bottom:10px"><strong>${RUN_LABEL[k]}</strong> <span class="muted">· ${secs(r.train_time_s)} train time</span>
      <div class="split" role="img" aria-label="${RUN_LABEL[k]}: ${secs(r.time_full_s)} full, ${secs(r.time_reduced_s)} reduced">
        ${f > 0 ? html`<span class="full" style="width:${(f * 100).toFixed(2)}%">${f > 0.12 ? pct(f, 0) : ""}</span>` : ""}
        ${f < 1 && total ? html`<span class="reduced" style="width:${((1 - f) * 100).toFixed(2)}%">${1 - f > 0.12 ? pct(1 - f, 0) : ""}</span>` : ""}
      </div>
      <span class="muted"><span class="legend-dot" style="background:#1f5fbf"></span>full: ${int(r.steps_full)} steps, ${secs(r.time_full_s)}
      · <span class="legend-dot" style="background:#0f9d76"></span>reduced: ${int(r.steps_reduced)} steps, ${secs(r.time_reduced_s)}</span></div>`;
  })}${absent.map((k) => html`<div style="margin-bottom:10px"><strong>${RUN_LABEL[k]}</strong> <span class="muted">· not run (not asked for in the spec)</span></div>`)}`;
}

function flops(j) {
  const runs = runsOf(j);
  if (!runs.length) return html`<p class="muted">${noRunsWords(j)}</p>`;
  return html`<div class="table-wrap"><table class="cards"><thead><tr><th scope="col">Run</th><th class="num" scope="col">Full step</th><th class="num" scope="col">Reduced step</th><th class="num" scope="col">Total</th></tr></thead><tbody>
    ${runs.map(([k, r]) => !r.steps ? html`<tr><td data-label="Run">${RUN_LABEL[k]}</td><td class="muted" colspan="3" data-label="FLOPs">did not run</td></tr>` : html`<tr><td data-label="Run"><strong>${RUN_LABEL[k]}</strong></td><td class="num" data-label="Full step">${gflops(r.flops_full_step)}</td><td class="num" data-label="Reduced step">${r.steps_reduced ? gflops(r.flops_reduced_step, "not counted") : html`<span class="muted">no reduced steps</span>`}</td><td class="num" data-label="Total">${gflops(r.total_flops)}</td></tr>`)}
    </tbody></table></div>
    <p class="muted">Forward + backward FLOPs of one training step. FLOP saving: <strong>${pct(j.summary && j.summary.flop_saving, 1, "none (no baseline ran)")}</strong></p>`;
}

const specValue = (v) => (v === null ? "null" : Array.isArray(v) || (v && typeof v === "object") ? JSON.stringify(v) : String(v));

/**
 * The spec's settings that differ from the defaults (GET /meta), each with the default it replaces:
 * specDiff({train: {epochs: 12, seed: 0}}, {train: {epochs: 2, seed: 0}}) -> [{key: "train.epochs", value: 12, default: 2}].
 * The name is left out (the page's title), so is the spec format's version.
 */
export function specDiff(spec, defaults) {
  const rows = [];
  const walk = (obj, dflt, prefix) => {
    for (const [k, v] of Object.entries(obj || {})) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (key === "name" || key === "version") continue;
      const d = dflt && typeof dflt === "object" ? dflt[k] : undefined;
      if (v && typeof v === "object" && !Array.isArray(v)) walk(v, d, key);
      else if (JSON.stringify(v) !== JSON.stringify(d)) rows.push({ key, value: v, default: d });
    }
  };
  walk(spec, defaults, "");
  return rows;
}

function specList(spec, defaults) {
  const every = specDiff(spec, {});  // against nothing: every setting
  const diff = defaults ? specDiff(spec, defaults) : every;
  const same = every.length - diff.length;
  const list = diff.length
    ? html`<dl class="kv spec-diff" id="spec-diff">${diff.map((d) => html`<dt>${d.key}</dt><dd><span class="mono">${specValue(d.value)}</span>
        ${defaults ? html`<span class="muted">${d.default === undefined ? "(not in the defaults)" : html`(default ${specValue(d.default)})`}</span>` : ""}</dd>`)}</dl>`
    : html`<p id="spec-diff">Every setting is at its default.</p>`;
  const head = defaults
    ? html`What this job changed from the defaults${same > 0 ? html`; ${int(same)} other setting${same === 1 ? " keeps its default" : "s keep their defaults"}` : ""}:`
    : "Every setting (the server's defaults could not be read to compare with):";
  return html`<p class="muted" style="margin-bottom:6px">${head}</p>${list}`;
}

/** The hardware the job's runs measured they ran on (JobResult.hardware; GET /jobs/{id} hardware). */
function hardwarePanel(j) {
  const hw = j.hardware || (j.result && j.result.hardware) || null;
  let body;
  if (hw) {
    const runs = runsOf(j).filter(([, r]) => contentionWords(r));
    body = html`<dl class="kv" id="hardware-list"><dt>key</dt><dd>${hardwareBadge(hw.key)}</dd>
        ${hardwareRows(hw).map(([label, value]) => html`<dt>${label}</dt><dd>${value === null || value === undefined || value === "" ? html`<span class="muted">not recorded</span>` : value}</dd>`)}
        <dt>to itself?</dt><dd id="hardware-contention">${contended(j) ? html`${contendedBadge(contention(j))} no: ${contention(j)}`
          : j.status === "succeeded" ? "yes: nothing starved its training threads" : html`<span class="muted">measured while the job runs</span>`}</dd>
        ${runs.map(([k, r]) => html`<dt>${RUN_LABEL[k]} run</dt><dd>${contentionWords(r)}</dd>`)}</dl>`;
  } else if (j.hardware_key === UNKNOWN_HARDWARE) {
    body = html`<p style="margin:0 0 8px">${hardwareBadge(UNKNOWN_HARDWARE)}</p><p class="muted" id="hardware-list">Not recorded: this job ran before dynds recorded the hardware of each run. Its results form their own “unknown” track.</p>`;
  } else {
    body = html`<p class="muted" id="hardware-list">${ACTIVE.has(j.status) ? "Recorded when a worker runs the job: the process that trains measures what it runs on." : "Not recorded: no run of this job finished."}</p>`;
  }
  return html`<section class="panel" aria-labelledby="hw-title" id="job-hardware"><h2 id="hw-title">Hardware</h2>${body}
    <p class="muted" style="margin:8px 0 0;font-size:.85rem">Measured by the process that ran the job, not read from the spec. Results are compared only with results measured on the same key.</p></section>`;
}

/** Each time the job resumed from a checkpoint (JobResult.interruptions; while it runs, its progress's resumed). */
function resumptions(j) {
  const done = (j.result && j.result.interruptions) || [];
  const live = !done.length && j.progress && j.progress.resumed ? [j.progress.resumed] : [];
  const all = done.length ? done : live;
  if (!all.length) return "";
  const steps = (r) => Object.entries(r.steps || {}).map(([run, step]) => `${RUN_LABEL[run] || run} from step ${int(step)}`).join(", ");
  return html`<h3>Resumed from checkpoints</h3><ol class="resumptions" id="resumptions">${all.map((r) => html`<li>${steps(r) || "from the start of its part"}
      <span class="muted">(${r.phase || "job"}; ${secs(r.lost_s, "time lost not recorded")} lost: steps done again and the time it was down)</span></li>`)}</ol>`;
}

function details(j, defaults) {
  const rep = j.reproducibility;
  const pkgs = rep && rep.packages ? Object.entries(rep.packages).map(([k, v]) => `${k} ${v}`).join(", ") : "not recorded";
  return html`<div class="grid grid-2">
    <section class="panel" aria-labelledby="split-title"><h2 id="split-title">Time by batch type</h2>${timeSplit(j)}</section>
    <section class="panel" aria-labelledby="flops-title"><h2 id="flops-title">FLOPs</h2>${flops(j)}</section>
    ${hardwarePanel(j)}
    <section class="panel" aria-labelledby="rep-title"><h2 id="rep-title">Reproducibility</h2>
      ${rep ? html`<dl class="kv">
        <dt>git revision</dt><dd class="mono">${rep.git_revision || "unknown"}${rep.git_dirty ? " (dirty)" : ""}</dd>
        <dt>seed</dt><dd>${rep.seed ?? "not recorded"}</dd>
        <dt>device</dt><dd>${rep.device || "not recorded"}${rep.device_name ? ` · ${rep.device_name}` : ""}</dd>
        <dt>CUDA</dt><dd>${rep.cuda || "none"}</dd>
        <dt>host</dt><dd>${rep.host || "not recorded"}</dd>
        <dt>python</dt><dd>${rep.python || "not recorded"}</dd>
        <dt>packages</dt><dd class="mono">${pkgs}</dd></dl>` : html`<p class="muted">Recorded when a worker starts the job.</p>`}
      <h3>Timeline</h3>
      <dl class="kv"><dt>created</dt><dd>${when(j.created_at, "unknown")}</dd><dt>started</dt><dd>${when(j.started_at, "not yet")}</dd>
        <dt>finished</dt><dd>${when(j.finished_at, "not yet")}</dd><dt>wall time</dt><dd>${j.started_at ? duration(j.started_at, j.finished_at) : "not started"}</dd>
        <dt>attempts</dt><dd id="attempts">${int(j.attempts || 0)}${j.stops ? ` (${int(j.stops)} stopped by a shutdown, resumed)` : ""}</dd></dl>
      ${resumptions(j)}
    </section>
    <section class="panel span-all" aria-labelledby="spec-title"><h2 id="spec-title">Spec</h2>
      <p class="muted">Hash <code>${j.spec_hash}</code></p>${specList(j.spec, defaults)}
      <details><summary>The whole spec, as JSON</summary><pre class="spec">${JSON.stringify(j.spec, null, 2)}</pre></details></section></div>`;
}
export { esc };
