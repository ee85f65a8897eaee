// Compare: time saving against accuracy delta for every finished run, the Pareto front drawn,
// coloured by schedule kind. Hover shows the settings; click opens the job (or selects it to overlay curves).
import { get, apiUrl } from "../api.js";
import { html, raw, pct, pp, int, secs } from "../format.js";
import { SCHEDULE_COLORS, markRendered, loadingBox, emptyBox, errorBox, chartLib, setHashQuery } from "../common.js";
import { paretoFront } from "../pareto.js";

const OVERLAY_COLORS = ["#1f5fbf", "#c2410c", "#0f9d76", "#8b3fd9", "#b42318", "#0e7490", "#a16207", "#be185d"];

export function render(root, { query }) {
  const st = { root, rows: [], track: query.track || "", selectMode: false, selected: new Map(), chart: null, overlay: null, alive: true, shown: [] };
  root.innerHTML = String(html`
    <div class="page-head">
      <div><h1>Compare</h1><p class="muted">Each point is a finished job: how much training time DynDS saved against its paired baseline, and what it cost in validation accuracy.</p></div>
      <div class="actions">
        <label for="track" class="muted" style="margin:0">Track</label>
        <select id="track" style="width:auto;max-width:340px"><option value="">All tracks</option></select>
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
  root.querySelector("#track").addEventListener("change", (e) => setHashQuery("compare", { track: e.target.value }));
  root.querySelector("#add-job").addEventListener("submit", (e) => {
    e.preventDefault();
    const v = parseInt(root.querySelector("#add-job-id").value, 10);
    if (v > 0) toggleSelect(st, v, true);
    root.querySelector("#add-job-id").value = "";
  });
  load(st);
  return () => { st.alive = false; st.chart && st.chart.destroy(); st.overlay && st.overlay.destroy(); };
}

export function update(root, { query }) {
  // Track changes redraw from the rows already loaded: the export holds every track.
  const st = root.__compare;
  if (!st) return;
  st.track = query.track || "";
  root.querySelector("#track").value = st.track;
  draw(st);
}

async function load(st) {
  st.root.__compare = st;
  try {
    st.rows = await get("/export", { format: "json" });
    if (st.rows && !Array.isArray(st.rows)) st.rows = st.rows.data || st.rows.rows || [];
  } catch (err) {
    if (!st.alive) return;
    st.root.querySelector("#scatter-msg").innerHTML = String(errorBox(err));
    markRendered("compare");
    return;
  }
  if (!st.alive) return;
  const counts = new Map();
  for (const r of st.rows) counts.set(r.track, (counts.get(r.track) || 0) + 1);
  const sel = st.root.querySelector("#track");
  for (const [t, n] of [...counts].sort()) sel.add(new Option(`${t} (${int(n)})`, t));
  if (st.track && !counts.has(st.track)) st.track = "";
  sel.value = st.track;
  draw(st);
  markRendered("compare");
}

function draw(st) {
  const rows = st.rows.filter((r) => (!st.track || r.track === st.track) && r.time_saving !== null && r.time_saving !== undefined && r.acc_delta !== null && r.acc_delta !== undefined);
  const msg = st.root.querySelector("#scatter-msg");
  const box = st.root.querySelector("#scatter-box");
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
  const front = paretoFront(pts).map((i) => ({ x: pts[i].x, y: pts[i].y, row: pts[i].row }));
  const many = pts.length > 2000;
  const datasets = [...byKind].map(([k, data]) => ({
    type: "scatter", label: `${k} (${int(data.length)})`, data, backgroundColor: (SCHEDULE_COLORS[k] || "#777") + (many ? "99" : "cc"),
    borderColor: SCHEDULE_COLORS[k] || "#777", borderWidth: 0, pointRadius: many ? 2.5 : 4, pointHoverRadius: 7, pointHitRadius: 4,
  }));
  datasets.push({
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
        legend: { position: "bottom" },
        tooltip: { callbacks: { label: (item) => tooltipLines(item.raw.row) } },
      },
      scales: {
        x: { type: "linear", title: { display: true, text: "time saving vs baseline (%)" }, grid: { color: (c) => (c.tick.value === 0 ? "#9aa4ae" : "#e6e9ed") } },
        y: { type: "linear", title: { display: true, text: "accuracy Δ vs baseline (pp)" }, grid: { color: (c) => (c.tick.value === 0 ? "#9aa4ae" : "#e6e9ed") } },
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
  st.root.querySelector("#scatter-note").textContent =
    `${int(pts.length)} run${pts.length === 1 ? "" : "s"}${st.track ? ` on ${st.track}` : " across all tracks"}. Up and to the right is better; the black line joins the runs no other run beats on both axes.`;
}

function tooltipLines(r) {
  return [
    `#${r.id} ${r.name || ""}`,
    `${r.setting_key || r.schedule_kind}`,
    `seed ${r.seed ?? "—"} · ${r.track}`,
    `time saving ${pct(r.time_saving)} · acc Δ ${pp(r.acc_delta)}`,
    `DynDS ${secs(r.dynds_time_s)} vs baseline ${secs(r.baseline_time_s)}`,
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
  const Chart = chartLib();
  if (st.overlay) { st.overlay.data.datasets = datasets; st.overlay.update("none"); return; }
  st.overlay = new Chart(st.root.querySelector("#overlay"), {
    type: "line", data: { datasets },
    options: {
      animation: false, parsing: false, responsive: true, maintainAspectRatio: false,
      interaction: { mode: "nearest", intersect: false },
      plugins: { legend: { position: "bottom" } },
      scales: { x: { type: "linear", title: { display: true, text: "train time (s)" } }, y: { title: { display: true, text: "val. accuracy (%)" } } },
    },
  });
}
