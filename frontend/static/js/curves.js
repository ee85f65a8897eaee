// Training curves from metric points: pure shaping first, then a thin Chart.js wrapper.
import { RUN_STYLES, chartLib } from "./common.js";
import { secs } from "./format.js";

/** x of a metric point on the chosen axis: "time" (train seconds) or "steps" (optimizer steps done). */
export function pointX(p, axis) {
  if (axis === "time") return p.train_time_s;
  if (p.kind === "step") return (p.step ?? 0) + 1;
  const v = p.values || {};
  if (v.steps_full !== undefined && v.steps_reduced !== undefined) return v.steps_full + v.steps_reduced;
  return p.step ?? null;
}

/**
 * Group points into {run: {loss: [{x,y}], val_acc: [{x,y}], val_loss: [...], loss_lo, loss_hi}} sorted by x.
 * A long run's step points are buckets (app/storage/buckets.py): loss is their mean, and loss_lo / loss_hi
 * their min and max (the band a spike shows in), present only for buckets.
 */
export function shapeCurves(points, axis) {
  const out = {};
  for (const p of points) {
    const run = (out[p.run] ||= { loss: [], val_acc: [], val_loss: [], loss_lo: [], loss_hi: [] });
    const x = pointX(p, axis);
    if (x === null || x === undefined) continue;
    const v = p.values || {};
    if (p.kind === "step" && v.loss !== undefined) run.loss.push({ x, y: v.loss });
    if (p.kind === "step" && v.loss_min != null && v.loss_max != null) {
      run.loss_lo.push({ x, y: v.loss_min });
      run.loss_hi.push({ x, y: v.loss_max });
    }
    if (p.kind === "epoch") {
      if (v.val_acc !== undefined) run.val_acc.push({ x, y: v.val_acc });
      if (v.val_loss !== undefined) run.val_loss.push({ x, y: v.val_loss });
    }
  }
  for (const r of Object.values(out)) for (const k of Object.keys(r)) r[k].sort((a, b) => a.x - b.x);
  return out;
}

/**
 * Exponential moving average of a curve, debiased so it starts at the first value (as TensorBoard's
 * smoothing): y_i = EMA_i / (1 - weight^(i+1)). weight 0 returns the points as they are.
 * ema([{x: 1, y: 2}, {x: 2, y: 0}], 0.5) -> [{x: 1, y: 2}, {x: 2, y: 0.667}]
 */
export function ema(points, weight) {
  if (!(weight > 0 && weight < 1)) return points;
  let acc = 0, debias = 1;
  return points.map((p, i) => {
    acc = acc * weight + (1 - weight) * p.y;
    debias *= weight;
    return { x: p.x, y: acc / (1 - debias) };
  });
}

/** The curves with one metric smoothed per run (each run on its own: runs never blend). */
export function smoothCurves(curves, metric, weight) {
  const out = {};
  for (const [run, c] of Object.entries(curves)) out[run] = { ...c, [metric]: ema(c[metric] || [], weight) };
  return out;
}

/**
 * Legend entries drawn as what they stand for: a line series as a line (dashed when it is dashed: a
 * filled box hid the dash), a filled band as a box, points as their point style. `lineWidth`: how long
 * the lines are drawn, only for charts of lines alone (Chart.js gives every entry that width).
 */
export function legendLabels({ lineWidth = null } = {}) {
  return {
    usePointStyle: true, boxHeight: 10, ...(lineWidth ? { pointStyleWidth: lineWidth } : {}),
    filter: (item, data) => !(data.datasets[item.datasetIndex] || {}).$band,  // min-max bands: no legend entry
    generateLabels: (chart) => chartLib().defaults.plugins.legend.labels.generateLabels(chart).map((item) => {
      const ds = chart.data.datasets[item.datasetIndex] || {};
      const type = ds.type || chart.config.type;
      if (type === "line" && ds.fill && ds.fill !== false) item.pointStyle = "rect";
      else if (type === "line") {
        item.pointStyle = "line";
        item.lineDash = ds.borderDash || [];
        item.lineWidth = Math.max(2, ds.borderWidth || 2);
        item.strokeStyle = ds.borderColor;
      }
      return item;
    }),
  };
}

const axisTitle = (axis) => (axis === "time" ? "train time (s)" : "steps");

export function lineChart(canvas, { yTitle, yMax, axis, legend = true }) {
  const Chart = chartLib();
  return new Chart(canvas, {
    type: "line",
    data: { datasets: [] },
    options: {
      animation: false, parsing: false, normalized: true, responsive: true, maintainAspectRatio: false,
      interaction: { mode: "nearest", intersect: false, axis: "x" },
      plugins: {
        legend: { display: legend, position: "bottom", labels: legendLabels({ lineWidth: 30 }) },
        decimation: { enabled: true, algorithm: "lttb", samples: 800 },
        tooltip: { callbacks: { title: (items) => items.length ? (chartAxis(items[0].chart) === "time" ? secs(items[0].parsed.x) : `step ${items[0].parsed.x}`) : "" } },
      },
      scales: {
        x: { type: "linear", title: { display: true, text: axisTitle(axis) }, beginAtZero: true },
        y: { title: { display: true, text: yTitle }, ...(yMax ? { suggestedMax: yMax } : {}) },
      },
    },
  });
}

const chartAxis = (chart) => chart.$dyndsAxis || "time";

/** Replace a chart's series by per-run curves of `metric`; label runs with `suffix`. */
export function setSeries(chart, curves, metric, axis, { labelFor = null, points = false } = {}) {
  chart.$dyndsAxis = axis;
  chart.options.scales.x.title.text = axisTitle(axis);
  const datasets = [];
  for (const run of ["dynds", "baseline", "equal_time"]) {
    const c = curves[run];
    if (!c || !c[metric].length) continue;
    const st = RUN_STYLES[run];
    if (metric === "loss" && c.loss_hi && c.loss_hi.length) {
      // The buckets' min-max band under the mean (the upper edge filled down to the lower: "+1").
      const band = { borderWidth: 0, pointRadius: 0, pointHoverRadius: 0, tension: 0, $band: true };
      datasets.push({ ...band, label: `${st.label} max`, data: c.loss_hi, backgroundColor: `${st.color}26`, fill: "+1" });
      datasets.push({ ...band, label: `${st.label} min`, data: c.loss_lo, backgroundColor: "transparent", fill: false });
    }
    datasets.push({
      label: labelFor ? labelFor(run) : st.label, data: c[metric], borderColor: st.color, backgroundColor: st.color,
      borderDash: st.dash, borderWidth: points ? 2 : 1.5, pointRadius: points ? 3 : 0, pointHoverRadius: 4, tension: 0, indexAxis: "x",
    });
  }
  chart.data.datasets = datasets;
  chart.update("none");
}
