// Compare: time saving against accuracy delta for every finished run, coloured by schedule kind, with the
// Pareto front of one track (never across tracks: different budgets, or the same budget on different
// hardware, are not comparable); and for one track the budget frontier: the baseline trained for less time
// (accuracy against time fraction, with its 95 % band) and the DynDS settings as points with their
// intervals. A track is a recipe on one hardware key. Hover shows the settings and the hardware; click
// opens the job (or selects it to overlay curves).
import { get, apiUrl } from "../api.js";
import { html, raw, pct, pt, int, secs, pctOfCI, pctCI } from "../format.js";
import { SCHEDULE_COLORS, markRendered, loadingBox, emptyBox, errorBox, chartLib, setHashQuery, verdictWord } from "../common.js";
import { paretoFront } from "../pareto.js";
import { legendLabels } from "../curves.js";
import { settingLabel } from "../setting.js";
import { UNKNOWN_HARDWARE, hardwareTrackOptions } from "../hardware.js";

// Where a DynDS cell lies against the baseline's band (GET /frontier points[].position).
export const POSITION = {
  above: { color: "#1a7f37", label: "above the band: beats the baseline trained for less time" },
  within: { color: "#1f5fbf", label: "within the band: no better than the baseline trained for less time" },
  below: { color: "#b42318", label: "below the band: worse than the baseline trained for less time" },
  unknown: { color: "#8c959f", label: "position unknown (outside the baseline's time range)" },
};
export const FRONTIER_CAPTION = "A point above the band beats training the baseline for less time; within the band it does no better; below it, worse.";

/** Axis bounds that hold every value (intervals included) with a margin, so nothing is clipped; given as
 * suggested bounds, so Chart.js still widens them to round tick values. */
export function paddedRange(values, { pad = 0.08, minSpan = 1 } = {}) {
  const v = values.filter((x) => Number.isFinite(x));
  if (!v.length) return {};
  let lo = Math.min(...v), hi = Math.max(...v);
  if (hi - lo < minSpan) { const mid = (lo + hi) / 2; lo = mid - minSpan / 2; hi = mid + minSpan / 2; }
  const m = (hi - lo) * pad;
  return { suggestedMin: lo - m, suggestedMax: hi + m };
}

// Error bars for points carrying {xLo, xHi, yLo, yHi} (Chart.js has none built in).
const errorBars = {
  id: "dyndsErrorBars",
  afterDatasetsDraw(chart) {
    const { ctx, scales: { x, y } } = chart;
    ctx.save();
    chart.data.datasets.forEach((ds, di) => {
      if (!ds.errorBars || !chart.isDatasetVisible(di)) return;
      ctx.strokeStyle = ds.borderColor; ctx.lineWidth = 1.5;
      for (const p of ds.data) {
        const px = x.getPixelForValue(p.x), py = y.getPixelForValue(p.y);
        ctx.beginPath();
        if (Number.isFinite(p.xLo) && Number.isFinite(p.xHi)) {
          const a = x.getPixelForValue(p.xLo), b = x.getPixelForValue(p.xHi);
          ctx.moveTo(a, py); ctx.lineTo(b, py); ctx.moveTo(a, py - 4); ctx.lineTo(a, py + 4); ctx.moveTo(b, py - 4); ctx.lineTo(b, py + 4);
        }
        if (Number.isFinite(p.yLo) && Number.isFinite(p.yHi)) {
          const a = y.getPixelForValue(p.yLo), b = y.getPixelForValue(p.yHi);
          ctx.moveTo(px, a); ctx.lineTo(px, b); ctx.moveTo(px - 4, a); ctx.lineTo(px + 4, a); ctx.moveTo(px - 4, b); ctx.lineTo(px + 4, b);
        }
        ctx.stroke();
      }
    });
    ctx.restore();
  },
};

const OVERLAY_COLORS = ["#1f5fbf", "#c2410c", "#0f9d76", "#8b3fd9", "#b42318", "#0e7490", "#a16207", "#be185d"];

export function render(root, { query }) {
  const st = { root, rows: [], track: query.track || "", selectMode: false, selected: new Map(), chart: null, overlay: null, alive: true, shown: [] };
  root.innerHTML = String(html`
    <div class="page-head">
      <div><h1>Compare</h1><p class="muted">Each point is a finished job: how much training time DynDS saved against its paired baseline, and what it cost in validation accuracy.</p></div>
      <div class="actions">
        <label for="track" class="muted" style="margin:0">Track</label>
        <select id="track" style="width:auto;max-width:min(100%, 420px)"><option value="">All tracks</option></select>
      </div>
    </div>
    <section class="panel" aria-labelledby="scatter-title">
      <div class="page-head" style="margin-bottom:6px">
        <h2 id="scatter-title">Time saving vs accuracy Δ</h2>
        <label class="check" for="select-mode"><input type="checkbox" id="select-mode"> Click selects jobs to overlay their curves</label>
      </div>
      <div id="scatter-msg" aria-live="polite">${loadingBox("runs")}</div>
      <div class="chart-box tall" id="scatter-box" hidden><canvas id="scatter" role="img" aria-label="scatter of time saving against accuracy delta"></canvas></div>
      <p class="muted" id="scatter-note"></p>
    </section>
    <section class="panel" aria-labelledby="frontier-title">
      <div class="page-head" style="margin-bottom:6px"><h2 id="frontier-title">Budget frontier</h2>
        <label class="check" for="frontier-noisy"><input type="checkbox" id="frontier-noisy"> Include noisy timing</label></div>
      <p class="muted" style="margin-top:0">Is DynDS better than simply training the baseline for less time? The line is the baseline's validation accuracy when its training is cut to a fraction of the full budget's time (with its 95 % band over seeds); each point is a DynDS setting.</p>
      <div id="frontier-msg" aria-live="polite"></div>
      <div class="chart-box tall" id="frontier-box" hidden><canvas id="frontier" role="img" aria-label="baseline accuracy against training-time fraction, with the DynDS settings as points"></canvas></div>
      <p class="muted caption" id="frontier-caption"></p>
    </section>
    <section class="panel" aria-labelledby="overlay-title">
      <h2 id="overlay-title">Overlay curves</h2>
      <form class="actions" id="add-job" style="margin-bottom:10px">
        <label for="add-job-id" style="margin:0">Add job</label>
        <input id="add-job-id" type="number" min="1" placeholder="job id" style="width:120px">
        <button type="submit" class="btn">Add</button>
        <div class="chips" id="chips" aria-live="polite"></div>
      </form>
      <div id="overlay-msg"><p class="muted">Select jobs on the chart (tick the box above) or add them by id to compare their validation accuracy over train time.</p></div>
      <div class="chart-box" id="overlay-box" hidden><canvas id="overlay" role="img" aria-label="validation accuracy of the selected jobs"></canvas></div>
    </section>`);
  root.querySelector("#select-mode").addEventListener("change", (e) => { st.selectMode = e.target.checked; });
  root.querySelector("#frontier-noisy").addEventListener("change", () => drawFrontier(st));
  root.querySelector("#track").addEventListener("change", (e) => setHashQuery("compare", { track: e.target.value }));
  root.querySelector("#add-job").addEventListener("submit", (e) => {
    e.preventDefault();
    const v = parseInt(root.querySelector("#add-job-id").value, 10);
    if (v > 0) toggleSelect(st, v, true);
    root.querySelector("#add-job-id").value = "";
  });
  load(st);
  return () => { st.alive = false; st.chart && st.chart.destroy(); st.overlay && st.overlay.destroy(); st.frontier && st.frontier.destroy(); };
}

// Up to this many succeeded jobs the page loads them all (every track in one scatter); past it, one track's at a
// time (an export of a million jobs is hundreds of megabytes).
export const EXPORT_ALL_MAX = 20000;

export function update(root, { query }) {
  // Track changes redraw from the rows already loaded when the export holds every track; else that track's rows.
  const st = root.__compare;
  if (!st) return;
  st.track = query.track || "";
  if (st.perTrack) { load(st); return; }
  pickTrack(st);
  draw(st);
  drawFrontier(st);
}

/** The rows of the chosen track (a label from the tracks list: asked for by its key), or none without one. */
async function trackRows(st, tracks) {
  const t = tracks.find((x) => x.track === st.track || x.track_key === st.track);
  if (!st.track) return [];
  return get("/export", { format: "json", track: t ? t.track_key : st.track, columns: EXPORT_COLUMNS });
}

// What the scatter, its tooltip and the track filter read: a third fewer bytes than every summary column.
export const EXPORT_COLUMNS = "id,name,track,recipe_hash,schedule_kind,setting_key,seed,time_saving,acc_delta,dynds_time_s,baseline_time_s,timing_noisy,contended,hardware_key";

async function load(st) {
  st.root.__compare = st;
  const seq = (st.seq = (st.seq || 0) + 1);
  let lb = null;
  try {
    // The tracks as the frontier knows them (one per recipe and hardware), and how many jobs each holds; optional.
    lb = await get("/leaderboard/tracks").catch(() => null);
    const tracks = (lb && lb.tracks) || [];
    st.total = tracks.reduce((n, t) => n + (t.n_jobs || 0), 0);
    st.perTrack = st.total > EXPORT_ALL_MAX;
    st.rows = st.perTrack ? await trackRows(st, tracks) : await get("/export", { format: "json", columns: EXPORT_COLUMNS });
    if (st.rows && !Array.isArray(st.rows)) st.rows = st.rows.data || st.rows.rows || [];
    frontierAhead(st, tracks);
  } catch (err) {
    if (!st.alive) return;
    st.root.querySelector("#scatter-msg").innerHTML = String(errorBox(err));
    markRendered("compare");
    return;
  }
  if (!st.alive || seq !== st.seq) return;
  st.tracks = trackList((lb && lb.tracks) || [], st.rows);
  const counts = st.perTrack
    ? new Map(((lb && lb.tracks) || []).map((t) => [t.track, t.n_jobs]))
    : new Map(st.tracks.map((t) => [t.label, st.rows.filter((r) => inTrack(r, t)).length]));
  pickTrack(st);
  // A track with no finished DynDS-vs-baseline run can still have a frontier (baseline runs only).
  if (st.sel && !counts.has(st.sel.label)) { st.tracks.push(st.sel); counts.set(st.sel.label, null); }
  trackOptions(st.root.querySelector("#track"), st.tracks, counts);
  st.root.querySelector("#track").value = st.sel ? st.sel.label : "";
  draw(st);
  drawFrontier(st);
  markRendered("compare");
}

/** The named track's frontier, asked for once its runs have come and before the scatter is drawn (drawFrontier
 * takes it): the server builds it while the browser draws, and not while it builds the export. */
function frontierAhead(st, tracks) {
  const t = st.track && tracks.find((x) => x.track === st.track || x.track_key === st.track);
  st.ahead = null;
  if (!t) return;
  const frontier = get("/frontier", { track: t.track_key || t.track });
  frontier.catch(() => {});  // drawFrontier reports a failure
  st.ahead = { track: t.track_key || t.track, frontier };
}

/**
 * The tracks to choose from: the leaderboard's (a recipe on one hardware key, with its label and key), then
 * those of export rows no leaderboard track holds. {label, key, recipe_hash, recipe_label, hardware_key} each.
 */
export function trackList(lbTracks, rows) {
  const list = [];
  const add = (t) => { if (!list.some((x) => x.label === t.label)) list.push(t); };
  for (const t of lbTracks) {
    if (t && t.track) add({ label: t.track, key: t.track_key || null, recipe_hash: t.recipe_hash || null, recipe_label: t.recipe_label || t.track, hardware_key: t.hardware_key || null });
  }
  for (const r of rows) {
    if (list.some((t) => inTrack(r, t))) continue;
    const hw = r.hardware_key || null;  // none: a server that does not record hardware
    add({ label: hw ? `${r.track} on ${hw}` : r.track, key: hw && r.recipe_hash ? `${r.recipe_hash}@${hw}` : null,
      recipe_hash: r.recipe_hash || null, recipe_label: r.track, hardware_key: hw });
  }
  return list;
}

/** Whether an export row belongs to a track: the same recipe measured on the same hardware key. */
export function inTrack(r, t) {
  if (t.hardware_key && (r.hardware_key || UNKNOWN_HARDWARE) !== t.hardware_key) return false;
  if (t.recipe_hash && r.recipe_hash) return r.recipe_hash === t.recipe_hash;
  return r.track === t.recipe_label || r.track === t.label || t.label.startsWith(`${r.track} · `);
}

/**
 * The track the query names (a label or a track key; a recipe's label or hash when it ran on one hardware
 * key only): st.sel. A recipe measured on several keys names no one track: st.choices lists them.
 */
function pickTrack(st) {
  const q = st.track;
  st.sel = null;
  st.choices = null;
  if (!q) return;
  const tracks = st.tracks || [];
  const exact = tracks.find((t) => t.label === q || t.key === q);
  const same = exact ? [exact] : tracks.filter((t) => t.recipe_hash === q || t.recipe_label === q);
  if (same.length === 1) st.sel = same[0];
  else if (same.length > 1) st.choices = same;
  else st.sel = { label: q, key: null, recipe_hash: null, recipe_label: q, hardware_key: null };
  const sel = st.root.querySelector("#track");
  if (sel.options.length > 1) sel.value = st.sel ? st.sel.label : "";
}

/** The track select: one group per hardware key, each option a track with its number of compared runs. */
function trackOptions(sel, tracks, counts) {
  const sorted = [...tracks].sort((a, b) => a.label.localeCompare(b.label));
  hardwareTrackOptions(sel, sorted, (t) => {
    const n = counts.get(t.label);
    return [`${t.label} (${n === null || n === undefined ? "no compared runs" : int(n)})`, t.label];
  });
}

function draw(st) {
  const inView = (r) => (st.sel ? inTrack(r, st.sel) : st.choices ? st.choices.some((t) => inTrack(r, t)) : true);
  const rows = st.rows.filter((r) => inView(r) && r.time_saving !== null && r.time_saving !== undefined && r.acc_delta !== null && r.acc_delta !== undefined);
  const msg = st.root.querySelector("#scatter-msg");
  const box = st.root.querySelector("#scatter-box");
  if (!rows.length && st.perTrack && !st.sel) {
    msg.innerHTML = String(emptyBox(`${int(st.total)} finished jobs: choose a track.`, " With this many, the scatter shows one track's runs at a time."));
    box.hidden = true;
    st.root.querySelector("#scatter-note").textContent = "";
    markRendered("compare");
    return;
  }
  if (!rows.length) {
    msg.innerHTML = String(emptyBox("No finished runs to compare yet.", " Runs appear here when a job with a baseline has succeeded.", '<a href="#/submit">Submit a job</a>'));
    box.hidden = true;
    st.root.querySelector("#scatter-note").textContent = "";
    markRendered("compare");
    return;
  }
  msg.innerHTML = "";
  box.hidden = false;
  // One dataset per schedule kind (its colour in the legend), plus the Pareto front as a line.
  const byKind = new Map();
  const pts = rows.map((r) => ({ x: r.time_saving * 100, y: r.acc_delta, row: r }));
  for (const p of pts) {
    const k = p.row.schedule_kind || "none";
    if (!byKind.has(k)) byKind.set(k, []);
    byKind.get(k).push(p);
  }
  // The Pareto front only within one track: runs of different budgets or hardware are not comparable.
  const front = st.sel ? paretoFront(pts).map((i) => ({ x: pts[i].x, y: pts[i].y, row: pts[i].row })) : [];
  const many = pts.length > 2000;
  // Several hardware keys in view: each its own point shape (the note names them), so no run loses its hardware.
  const shapes = hardwareShapes(rows);
  // One style for the whole dataset when one hardware key is in view: an array makes Chart.js resolve each point's options.
  const pointStyle = (data) => (shapes.size > 1 ? data.map((p) => shapes.get(p.row.hardware_key || UNKNOWN_HARDWARE).style) : "circle");
  const datasets = [...byKind].map(([k, data]) => ({
    type: "scatter", label: `${k} (${int(data.length)})`, data, backgroundColor: (SCHEDULE_COLORS[k] || "#777") + (many ? "99" : "cc"),
    borderColor: SCHEDULE_COLORS[k] || "#777", borderWidth: 0, pointRadius: many ? 2.5 : shapes.size > 1 ? 5 : 4, pointHoverRadius: 7, pointHitRadius: 4,
    pointStyle: pointStyle(data),
  }));
  if (st.sel) datasets.push({
    type: "line", label: `Pareto front (${front.length})`, data: front, borderColor: "#111", backgroundColor: "#111", borderWidth: 2,
    pointRadius: 4, pointStyle: "rectRot", pointHoverRadius: 7, stepped: false, tension: 0, order: -1,
  });
  const Chart = chartLib();
  if (st.chart) st.chart.destroy();
  st.chart = new Chart(st.root.querySelector("#scatter"), {
    data: { datasets },
    options: {
      animation: false, parsing: false, normalized: true, responsive: true, maintainAspectRatio: false,
      interaction: { mode: "nearest", intersect: true },
      plugins: {
        legend: { position: "bottom", labels: kindLegend() },
        tooltip: { callbacks: { label: (item) => tooltipLines(item.raw.row) } },
      },
      scales: {
        x: { type: "linear", ...paddedRange(pts.map((p) => p.x).concat([0]), { minSpan: 10 }), title: { display: true, text: "time saving vs paired baseline (%)" }, grid: { color: (c) => (c.tick.value === 0 ? "#9aa4ae" : "#e6e9ed") } },
        y: { type: "linear", ...paddedRange(pts.map((p) => p.y).concat([0]), { minSpan: 1 }), title: { display: true, text: "accuracy Δ vs baseline (pt)" }, grid: { color: (c) => (c.tick.value === 0 ? "#9aa4ae" : "#e6e9ed") } },
      },
      onHover: (e, els) => { e.native.target.style.cursor = els.length ? "pointer" : "crosshair"; },
      onClick: (e, els) => {
        if (!els.length) return;
        const p = st.chart.data.datasets[els[0].datasetIndex].data[els[0].index];
        if (st.selectMode) toggleSelect(st, p.row.id);
        else location.hash = `#/jobs/${p.row.id}`;
      },
    },
  });
  const onHw = shapes.size > 1
    ? ` on ${int(shapes.size)} hardware keys (${[...shapes].map(([k, v]) => `${v.mark} ${k}`).join(", ")})` : "";
  st.root.querySelector("#scatter-note").textContent = st.sel
    ? `${int(pts.length)} run${pts.length === 1 ? "" : "s"} on ${st.sel.label}. Up and to the right is better; the black line (Pareto front) joins the runs no other run of this track beats on both axes.`
    : st.choices
      ? `${int(pts.length)} run${pts.length === 1 ? "" : "s"} of ${st.track}${onHw}. Pick one of its tracks to see its Pareto front; runs on different hardware are not comparable, so no front is drawn across them.`
      : `${int(pts.length)} run${pts.length === 1 ? "" : "s"} across all tracks${onHw}. Up and to the right is better. Pick one track to see its Pareto front: runs of different budgets or hardware are not comparable, so no front is drawn across tracks.`;
}

/** The scatter's legend names schedule kinds by colour: a circle each, whatever shapes the hardware gave the points. */
function kindLegend() {
  const labels = legendLabels();
  return { ...labels, generateLabels: (chart) => labels.generateLabels(chart).map((item) => (
    Array.isArray((chart.data.datasets[item.datasetIndex] || {}).pointStyle) ? { ...item, pointStyle: "circle" } : item)) };
}

const SHAPES = [["circle", "●"], ["triangle", "▲"], ["rect", "■"], ["rectRot", "◆"], ["star", "✶"], ["crossRot", "✕"], ["rectRounded", "▢"], ["cross", "+"]];
/** Hardware key -> {style: Chart.js point style, mark: the same shape as a character}, in key order. */
export function hardwareShapes(rows) {
  const keys = [...new Set(rows.map((r) => r.hardware_key || UNKNOWN_HARDWARE))].sort();
  return new Map(keys.map((k, i) => [k, { style: SHAPES[i % SHAPES.length][0], mark: SHAPES[i % SHAPES.length][1] }]));
}

async function drawFrontier(st) {
  const msg = st.root.querySelector("#frontier-msg");
  const box = st.root.querySelector("#frontier-box");
  const cap = st.root.querySelector("#frontier-caption");
  const seq = (st.frontierSeq = (st.frontierSeq || 0) + 1);
  const clear = () => { box.hidden = true; cap.textContent = ""; if (st.frontier) { st.frontier.destroy(); st.frontier = null; } };
  if (st.choices) {
    clear();
    msg.innerHTML = String(html`<div class="alert info" id="frontier-needs-track">${st.track} ran on ${int(st.choices.length)} hardware keys, and the budget frontier needs one: pick
      ${st.choices.map((t, i) => html`${i ? (i === st.choices.length - 1 ? " or " : ", ") : ""}<a href="#/compare?track=${encodeURIComponent(t.label)}">${t.hardware_key || t.label}</a>`)}. Times measured on different hardware cannot share one baseline curve.</div>`);
    return;
  }
  if (!st.sel) {
    clear();
    msg.innerHTML = String(html`<div class="alert info" id="frontier-needs-track">The budget frontier needs one track: pick a track above. Budgets of different tracks (or of one recipe on different hardware) cannot share one baseline curve.</div>`);
    return;
  }
  msg.innerHTML = String(loadingBox("the frontier"));
  const want = st.sel;
  let fr;
  try {
    // The track key names the recipe and the hardware exactly; older servers know tracks by label only.
    const noisy = st.root.querySelector("#frontier-noisy").checked;
    const ahead = st.ahead && !noisy && st.ahead.track === (want.key || want.label) ? st.ahead.frontier : null;
    st.ahead = null;
    fr = await (ahead || get("/frontier", { track: want.key || want.label, include_noisy: noisy ? "true" : undefined }));
  } catch (err) {
    if (!st.alive || seq !== st.frontierSeq) return;
    clear();
    msg.innerHTML = err.status === 404 && !(typeof err.detail === "string" && /track/i.test(err.detail))
      ? String(html`<div class="alert warn">This server does not serve the budget frontier yet (GET /api/v1/frontier answered 404).</div>`)
      : String(errorBox(err));
    return;
  }
  if (!st.alive || seq !== st.frontierSeq) return;
  if (want.hardware_key && fr.hardware_key && fr.hardware_key !== want.hardware_key) {
    clear();
    msg.innerHTML = String(html`<div class="alert error" role="alert">The server answered with the frontier measured on ${fr.hardware_key}, not on ${want.hardware_key}: not drawn (frontiers of different hardware are never mixed).</div>`);
    return;
  }
  const base = (fr.baseline || []).filter((b) => Number.isFinite(b.time_fraction) && Number.isFinite(b.acc_mean));
  const cells = (fr.points || []).filter((p) => Number.isFinite(p.time_fraction_mean) && Number.isFinite(p.acc_mean));
  if (!base.length) {
    clear();
    msg.innerHTML = String(html`<div class="alert info">No baseline runs at reduced budgets on ${fr.track || want.label} yet, so there is no frontier to draw${cells.length ? html` (${int(cells.length)} DynDS setting${cells.length === 1 ? "" : "s"} waiting)` : ""}.
      Queue them with <a href="#/submit?mode=sweep">Submit → Sweep → frontier preset</a> (the baseline at 25, 50, 75 and 100 % of the epochs, per seed).</div>`);
    return;
  }
  msg.innerHTML = "";
  box.hidden = false;
  const x100 = (v) => (Number.isFinite(v) ? v * 100 : NaN);
  const lo = (ci, m) => (Array.isArray(ci) && Number.isFinite(ci[0]) ? ci[0] : m);
  const hi = (ci, m) => (Array.isArray(ci) && Number.isFinite(ci[1]) ? ci[1] : m);
  const baseMean = base.map((b) => ({ x: x100(b.time_fraction), y: b.acc_mean, b }));
  const datasets = [
    { type: "line", label: "baseline 95 % band (lower)", data: base.map((b) => ({ x: x100(b.time_fraction), y: lo(b.acc_ci95, b.acc_mean) })),
      borderColor: "rgba(48,54,61,.35)", borderWidth: 1, pointRadius: 0, fill: false, tension: 0, band: true, order: 3 },
    { type: "line", label: "baseline 95 % band", data: base.map((b) => ({ x: x100(b.time_fraction), y: hi(b.acc_ci95, b.acc_mean) })),
      borderColor: "rgba(48,54,61,.35)", backgroundColor: "rgba(87,96,106,.18)", borderWidth: 1, pointRadius: 0, fill: "-1", tension: 0, band: true, order: 3 },
    { type: "line", label: "baseline trained for less time (mean)", data: baseMean, borderColor: "#30363d", backgroundColor: "#30363d",
      borderWidth: 2, borderDash: [6, 4], pointRadius: 3.5, pointHoverRadius: 6, tension: 0, order: 2 },
  ];
  for (const [pos, style] of Object.entries(POSITION)) {
    const data = cells.filter((c) => (POSITION[c.position] ? c.position : "unknown") === pos).map((c) => ({
      x: x100(c.time_fraction_mean), y: c.acc_mean, cell: c,
      xLo: x100(lo(c.time_fraction_ci95, NaN)), xHi: x100(hi(c.time_fraction_ci95, NaN)), yLo: lo(c.acc_ci95, NaN), yHi: hi(c.acc_ci95, NaN),
    }));
    if (!data.length) continue;
    datasets.push({ type: "scatter", label: `DynDS ${pos} (${int(data.length)})`, data, position: pos, errorBars: true,
      backgroundColor: style.color, borderColor: style.color, pointRadius: 5, pointHoverRadius: 8, pointStyle: "circle", order: 1 });
  }
  const xs = [], ys = [];
  for (const d of datasets) for (const p of d.data) { xs.push(p.x, p.xLo, p.xHi); ys.push(p.y, p.yLo, p.yHi); }
  const Chart = chartLib();
  if (st.frontier) st.frontier.destroy();
  st.frontier = new Chart(st.root.querySelector("#frontier"), {
    data: { datasets },
    plugins: [errorBars],
    options: {
      animation: false, parsing: false, responsive: true, maintainAspectRatio: false,
      interaction: { mode: "nearest", intersect: true },
      plugins: {
        legend: { position: "bottom", labels: { ...legendLabels(), filter: (item, data) => !/\(lower\)$/.test(data.datasets[item.datasetIndex].label) } },
        tooltip: { filter: (item) => !item.dataset.band, callbacks: { label: (item) => frontierTooltip(item.raw) } },
      },
      scales: {
        x: { type: "linear", ...paddedRange(xs, { minSpan: 10, pad: 0.05 }), title: { display: true, text: "train time, % of the full-budget baseline's" } },
        y: { type: "linear", ...paddedRange(ys, { minSpan: 2 }), title: { display: true, text: "val. accuracy (%)" } },
      },
    },
  });
  const hints = [];
  if (base.length < 2) hints.push("Only one baseline budget has run: queue the frontier preset (Submit → Sweep) for the baseline at 25, 50, 75 and 100 % of the epochs.");
  if (!cells.length) hints.push(st.root.querySelector("#frontier-noisy").checked ? "No DynDS setting of this track has finished." : "No DynDS setting to place: jobs with noisy timing are left out unless “Include noisy timing” is ticked.");
  cap.textContent = `${FRONTIER_CAPTION} ${int(cells.length)} DynDS setting${cells.length === 1 ? "" : "s"} and ${int(base.length)} baseline budget${base.length === 1 ? "" : "s"} on ${fr.track || want.label}.${hints.length ? " " + hints.join(" ") : ""}`;
}

function frontierTooltip(p) {
  if (p.cell) {
    const c = p.cell;
    return [
      c.setting_key ? settingLabel(c.setting_key) : "DynDS setting",
      `train time ${pctCI(c.time_fraction_mean, c.time_fraction_ci95, 0)} of the full baseline's`,
      `val. accuracy ${pctOfCI(c.acc_mean, c.acc_ci95, 1)}`,
      `${int(c.n_seeds)} seed${c.n_seeds === 1 ? "" : "s"} · verdict: ${verdictWord(c.verdict)}`,
      (POSITION[c.position] || POSITION.unknown).label,
    ];
  }
  if (p.b) {
    const b = p.b;
    return [`baseline at ${pct(b.time_fraction, 0)} of the full time`, `val. accuracy ${pctOfCI(b.acc_mean, b.acc_ci95, 1)}`, `${int(b.n_seeds)} seed${b.n_seeds === 1 ? "" : "s"}`];
  }
  return "";
}

function tooltipLines(r) {
  return [
    `#${r.id} ${r.name || ""}`,
    `${r.setting_key ? settingLabel(r.setting_key) : r.schedule_kind}`,
    `seed ${r.seed ?? "not recorded"} · ${r.track}`,
    ...(r.hardware_key ? [`on ${r.hardware_key === UNKNOWN_HARDWARE ? "hardware not recorded" : r.hardware_key}`] : []),
    `time saving ${pct(r.time_saving, 1, "not measured")} · acc Δ ${pt(r.acc_delta, 2, "not measured")}`,
    `DynDS ${secs(r.dynds_time_s, "time not recorded")} vs baseline ${secs(r.baseline_time_s, "not run")}`,
    ...(r.timing_noisy ? ["timing noisy: do not trust this time saving"] : []),
    ...(r.contended ? ["contended: the job did not have its hardware to itself"] : []),
  ];
}

async function toggleSelect(st, id, forceAdd = false) {
  if (st.selected.has(id) && !forceAdd) st.selected.delete(id);
  else if (!st.selected.has(id)) st.selected.set(id, null);
  renderChips(st);
  await Promise.all([...st.selected].filter(([, v]) => v === null).map(async ([jid]) => {
    try {
      const [job, points] = await Promise.all([get(`/jobs/${jid}`), epochPoints(jid)]);
      st.selected.set(jid, { job, points });
    } catch (err) {
      st.selected.set(jid, { error: err.message });
    }
  }));
  if (!st.alive) return;
  renderChips(st);
  drawOverlay(st);
}

async function epochPoints(id) {
  const out = [];
  let after;
  for (let guard = 0; guard < 200; guard++) {
    const page = await get(`/jobs/${id}/metrics`, { kind: "epoch", after, limit: 1000 });
    out.push(...(page.data || []));
    if (!page.data || !page.data.length || page.next_cursor === null || page.next_cursor === undefined || page.next_cursor === after) break;
    after = page.next_cursor;
  }
  return out;
}

function renderChips(st) {
  const chips = st.root.querySelector("#chips");
  chips.innerHTML = [...st.selected].map(([id, v], i) => String(html`<span class="chip"><span class="legend-dot" style="background:${OVERLAY_COLORS[i % OVERLAY_COLORS.length]}"></span>
    <a href="#/jobs/${id}">#${id}</a>${v && v.job ? ` ${v.job.name}` : v && v.error ? " (not found)" : " …"}
    <button type="button" data-remove="${id}" aria-label="Remove job ${id} from the overlay">×</button></span>`)).join("");
  chips.querySelectorAll("[data-remove]").forEach((b) => b.addEventListener("click", () => {
    st.selected.delete(Number(b.dataset.remove));
    renderChips(st);
    drawOverlay(st);
  }));
}

function drawOverlay(st) {
  const box = st.root.querySelector("#overlay-box");
  const msg = st.root.querySelector("#overlay-msg");
  const errors = [...st.selected].filter(([, v]) => v && v.error).map(([id, v]) => `#${id}: ${v.error}`);
  const datasets = [];
  [...st.selected].forEach(([id, v], i) => {
    if (!v || !v.points) return;
    const color = OVERLAY_COLORS[i % OVERLAY_COLORS.length];
    for (const run of ["dynds", "baseline"]) {
      const data = v.points.filter((p) => p.run === run && p.values && p.values.val_acc !== undefined)
        .map((p) => ({ x: p.train_time_s, y: p.values.val_acc })).sort((a, b) => a.x - b.x);
      if (!data.length) continue;
      datasets.push({ label: `#${id} ${run === "dynds" ? "DynDS" : "baseline"}`, data, borderColor: color, backgroundColor: color,
        borderDash: run === "baseline" ? [6, 4] : [], pointRadius: 2.5, borderWidth: 2, tension: 0 });
    }
  });
  msg.innerHTML = errors.length ? String(html`<div class="alert error">${errors.join("; ")}</div>`) : datasets.length || !st.selected.size ? (st.selected.size ? "" : String(html`<p class="muted">Select jobs on the chart (tick the box above) or add them by id to compare their validation accuracy over train time.</p>`)) : String(html`<p class="muted">The selected jobs have no epoch metrics yet.</p>`);
  box.hidden = !datasets.length;
  if (!datasets.length) return;
  // Axes that hold every point with a margin (a point on the edge is drawn half cut off).
  const pts = datasets.flatMap((d) => d.data);
  const x = { type: "linear", ...paddedRange(pts.map((p) => p.x), { minSpan: 1, pad: 0.05 }), title: { display: true, text: "train time (s)" } };
  const y = { type: "linear", ...paddedRange(pts.map((p) => p.y), { minSpan: 2 }), title: { display: true, text: "val. accuracy (%)" } };
  const Chart = chartLib();
  if (st.overlay) { st.overlay.data.datasets = datasets; st.overlay.options.scales = { x, y }; st.overlay.update("none"); return; }
  st.overlay = new Chart(st.root.querySelector("#overlay"), {
    type: "line", data: { datasets },
    options: {
      animation: false, parsing: false, responsive: true, maintainAspectRatio: false,
      interaction: { mode: "nearest", intersect: false },
      plugins: { legend: { position: "bottom", labels: legendLabels({ lineWidth: 30 }) } },
      scales: { x, y },
    },
  });
}
