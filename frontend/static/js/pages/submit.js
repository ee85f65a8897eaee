// Submit: a form over every JobSpec field, presets from /meta, the API's errors at their fields,
// the predicted FLOP saving (debounced POST /specs/validate) and a sweep mode (POST /sweeps).
import { get, post, meta, ApiError, getToken } from "../api.js";
import { html, raw, pct, gflops, esc, int } from "../format.js";
import { markRendered, loadingBox, errorBox } from "../common.js";
import { BASIC, ADVANCED, FIELDS, FIELD_BY_PATH, SCHEDULE_DEFAULTS, getPath, setPath, applies, parseValue, formatValue, locToPath, parseSweepValues } from "../specfields.js";

const VALIDATE_DEBOUNCE_MS = 400;
const fid = (path) => "f-" + path.replace(/\./g, "-");

export function render(root, { query }) {
  const st = { root, meta: null, base: null, timer: null, seq: 0, alive: true, sweep: query.mode === "sweep" };
  root.innerHTML = String(loadingBox("the form"));
  init(st, query);
  return () => {
    st.alive = false;
    clearTimeout(st.timer);
    if (st.barObserver) st.barObserver.disconnect();
    document.documentElement.style.removeProperty("--sticky-h");
  };
}

async function init(st, query) {
  const { root } = st;
  try {
    st.meta = await meta();
  } catch (err) {
    root.innerHTML = String(errorBox(err));
    markRendered("submit");
    return;
  }
  if (!st.alive) return;
  st.base = structuredClone(st.meta.defaults || {});
  const presets = Object.keys(st.meta.presets || {});
  root.innerHTML = String(html`
    <div class="page-head">
      <div><h1>Submit</h1><p class="muted">Train a DynDS run and its baseline. Every field has a default; presets are the project's examples.</p></div>
      <div class="actions">
        <label for="preset" class="muted" style="margin:0">Start from</label>
        <select id="preset" style="width:auto"><option value="">defaults</option>${presets.map((p) => html`<option value="${p}">${p}</option>`)}</select>
        <div class="segmented" role="group" aria-label="mode">
          <button type="button" data-mode="single" aria-pressed="${!st.sweep}">Single job</button>
          <button type="button" data-mode="sweep" aria-pressed="${st.sweep}">Sweep</button>
        </div>
      </div>
    </div>
    ${st.meta.auth_required ? html`<div class="alert info" id="auth-note">Submitting needs an API token: ${getToken() ? "one is set in this tab." : raw("none is set yet — use the “Set API token” button at the top.")}</div>` : ""}
    <form id="spec-form" novalidate>
      <div class="alert error error-summary" id="error-summary" role="alert" tabindex="-1" aria-labelledby="error-summary-title" hidden></div>
      <div id="form-errors" aria-live="assertive"></div>
      ${BASIC.map((g) => html`<fieldset id="${g.id}"><legend>${g.title}</legend><div class="fields">${g.paths.map((p) => fieldHtml(FIELD_BY_PATH[p], st.meta))}</div></fieldset>`)}
      <details id="advanced" class="advanced">
        <summary><span class="advanced-title">Advanced settings</span> <span class="muted advanced-what">${ADVANCED.reduce((n, s) => n + s.fields.length, 0)} more: optimizer and learning rate, data, device, DynDS input and kernels, batch norm, schedule details</span>
          <span class="badge failed" id="advanced-errors" hidden></span></summary>
        <p class="muted advanced-note">Every field has a working default; change them when you know why.</p>
        ${ADVANCED.map((s) => html`<fieldset id="sec-${s.id}"><legend>${s.title}</legend><div class="fields">${s.fields.map((f) => fieldHtml(f, st.meta))}</div></fieldset>`)}
      </details>
      <fieldset id="sweep-box" ${raw(st.sweep ? "" : "hidden")}>
        <legend>Sweep</legend>
        <p class="muted" style="margin-top:0">A grid queues one job per combination of the values listed (at most 1,000); the frontier preset queues the baseline alone at 25, 50, 75 and 100 % of the epochs, which draws the budget frontier on the Compare page. Each runs once per seed listed. Other fields come from the form above.</p>
        <div class="fields" style="margin-bottom:12px">
          <div class="field"><label for="sweep-name">Sweep name</label><input id="sweep-name" type="text" value="sweep"></div>
          <div class="field"><label for="sweep-preset">What to sweep</label><select id="sweep-preset" aria-describedby="sweep-preset-hint">
            <option value="">a grid over fields</option><option value="frontier">frontier: baseline at 25–100 % of the epochs</option></select>
            <div class="hint" id="sweep-preset-hint">frontier: no grid; one baseline run per budget and seed</div></div>
          <div class="field"><label for="sweep-seeds">Seeds</label><input id="sweep-seeds" type="text" autocomplete="off" placeholder="e.g. 0, 1, 2" aria-describedby="sweep-seeds-hint sweep-seeds-err">
            <div class="hint" id="sweep-seeds-hint">comma-separated integers; empty: the form's seed only. 3 or more seeds give a verdict with an interval.</div>
            <div class="error" id="sweep-seeds-err" role="alert"></div></div>
        </div>
        <div id="sweep-grid-box"><div id="sweep-rows"></div>
        <div class="actions"><button type="button" class="btn" id="add-row">Add a field</button></div></div>
        <p class="muted" id="sweep-count" role="status" style="margin:8px 0 0"></p>
        <div class="error" id="sweep-error" role="alert" style="color:var(--bad);font-weight:600"></div>
      </fieldset>
      <div class="sticky-submit" id="sticky-submit">
        <div class="actions" style="justify-content:space-between">
          <div class="predict" id="predict" role="status" aria-live="polite"><span class="muted">Checking the settings…</span></div>
          <div class="actions">
            <label class="check" for="force"><input type="checkbox" id="force"> Run even if an identical job exists</label>
            <button type="submit" class="btn btn-primary" id="submit-btn">${st.sweep ? "Queue sweep" : "Submit job"}</button>
          </div>
        </div>
      </div>
    </form>`);
  const form = root.querySelector("#spec-form");
  // The sticky bar's height, for the page's scroll padding: a field scrolled or tabbed to stays above it.
  const bar = root.querySelector("#sticky-submit");
  st.barObserver = new ResizeObserver(() => document.documentElement.style.setProperty("--sticky-h", `${Math.ceil(bar.getBoundingClientRect().height)}px`));
  st.barObserver.observe(bar);
  root.querySelector("#error-summary").addEventListener("click", (e) => {
    const a = e.target.closest && e.target.closest("a[data-field]");
    if (!a) return;
    e.preventDefault();  // the href names the field; following it would change the page's hash route
    focusField(st, a.dataset.field);
  });
  fill(st, st.base);
  if (query.preset && st.meta.presets && st.meta.presets[query.preset]) {
    root.querySelector("#preset").value = query.preset;
    fill(st, st.meta.presets[query.preset]);
  }
  if (query.from) {
    try {
      const j = await get(`/jobs/${query.from}`);
      fill(st, { ...j.spec, name: `${j.spec.name || j.name}-again` });
    } catch (err) { showGeneral(st, [err.message]); }
  }
  root.querySelector("#preset").addEventListener("change", (e) => {
    fill(st, e.target.value ? st.meta.presets[e.target.value] : st.base);
    changed(st);
  });
  root.querySelectorAll("[data-mode]").forEach((b) => b.addEventListener("click", () => setMode(st, b.dataset.mode === "sweep")));
  form.addEventListener("input", () => changed(st));
  form.addEventListener("change", (e) => { if (e.target.tagName === "SELECT") changed(st); });
  form.addEventListener("submit", (e) => { e.preventDefault(); submit(st); });
  root.querySelector("#add-row").addEventListener("click", () => addSweepRow(st));
  root.querySelector("#sweep-preset").addEventListener("change", () => { syncSweepPreset(st); updateSweepCount(st); });
  if (query.preset === "frontier") { root.querySelector("#sweep-preset").value = "frontier"; }
  if (query.seeds) root.querySelector("#sweep-seeds").value = query.seeds;
  syncSweepPreset(st);
  if (st.sweep) addSweepRow(st, "dynds.schedule.p", "0.3, 0.5, 0.7");
  changed(st);
  markRendered("submit");
}

function fieldHtml(f, m) {
  const id = fid(f.path);
  const hint = f.hint ? html`<div class="hint" id="${id}-hint">${f.hint}</div>` : "";
  const err = html`<div class="error" id="${id}-err" role="alert"></div>`;
  const described = raw(`aria-describedby="${id}-hint ${id}-err"`);
  if (f.type === "bool") {
    return html`<div class="field" data-path="${f.path}"><label class="check" for="${id}"><input type="checkbox" id="${id}" name="${f.path}" ${described}> ${f.label}</label>${hint}${err}</div>`;
  }
  if (f.type === "choice") {
    const choices = Array.isArray(f.choices) ? f.choices : (m.choices && m.choices[f.choices]) || [];
    return html`<div class="field" data-path="${f.path}"><label for="${id}">${f.label}</label><select id="${id}" name="${f.path}" ${described}>${choices.map((c) => html`<option value="${c}">${c}</option>`)}</select>${hint}${err}</div>`;
  }
  const isNum = f.type === "int" || f.type === "float";
  const attrs = raw([
    isNum ? 'type="number" inputmode="decimal"' : 'type="text"',
    f.min !== undefined ? `min="${f.min}"` : "", f.max !== undefined ? `max="${f.max}"` : "",
    isNum ? `step="${f.step || 1}"` : "", f.list ? `list="${id}-list"` : "", f.nullable ? 'placeholder="none"' : "",
  ].join(" "));
  const list = f.list ? html`<datalist id="${id}-list">${f.list.map((v) => html`<option value="${v}"></option>`)}</datalist>` : "";
  return html`<div class="field" data-path="${f.path}"><label for="${id}">${f.label}</label><input id="${id}" name="${f.path}" ${attrs} ${described} autocomplete="off">${list}${hint}${err}</div>`;
}

function input(st, path) { return st.root.querySelector("#" + fid(path)); }

function fill(st, spec) {
  const kind = getPath(spec, "dynds.schedule.kind") || "stochastic";
  for (const f of FIELDS) {
    const el = input(st, f.path);
    if (!el) continue;
    let v = getPath(spec, f.path);
    if (v === undefined && f.path.startsWith("dynds.schedule.")) v = (SCHEDULE_DEFAULTS[kind] || {})[f.path.split(".").pop()];
    if (v === undefined) v = getPath(st.base, f.path);
    if (f.type === "bool") el.checked = !!v; else el.value = formatValue(f, v);
  }
  syncApplicable(st);
}

function valueOf(st, path) {
  const f = FIELD_BY_PATH[path], el = input(st, path);
  return f.type === "bool" ? el.checked : parseValue(f, el.value);
}

function syncApplicable(st) {
  for (const f of FIELDS) {
    const el = st.root.querySelector(`.field[data-path="${f.path}"]`);
    if (el) el.hidden = !applies(f, (p) => valueOf(st, p));
  }
  // A section whose fields all do not apply (e.g. no schedule details for kind none) is not shown empty.
  st.root.querySelectorAll("#advanced fieldset").forEach((fs) => { fs.hidden = !fs.querySelector(".field:not([hidden])"); });
}

/** Show a field: open Advanced when it is inside, bring it to the middle of the screen, focus it. */
function focusField(st, path) {
  const el = input(st, path);
  if (!el) return;
  const adv = el.closest("details");
  if (adv && !adv.open) adv.open = true;
  el.scrollIntoView({ block: "center" });
  el.focus({ preventScroll: true });
}

/** The spec the form describes: the defaults, overlaid with every applicable field. */
export function buildSpec(st) {
  const spec = structuredClone(st.base);
  const kind = valueOf(st, "dynds.schedule.kind");
  setPath(spec, "dynds.schedule", { kind });
  for (const f of FIELDS) {
    if (!applies(f, (p) => valueOf(st, p))) {
      // Inapplicable non-schedule fields keep their defaults; schedule fields of other kinds are left out.
      continue;
    }
    setPath(spec, f.path, valueOf(st, f.path));
  }
  return spec;
}

function changed(st) {
  syncApplicable(st);
  updateSweepCount(st);
  clearTimeout(st.timer);
  st.timer = setTimeout(() => validate(st), VALIDATE_DEBOUNCE_MS);
}

async function validate(st) {
  const seq = ++st.seq;
  const box = st.root.querySelector("#predict");
  try {
    const { data } = await post("/specs/validate", { spec: buildSpec(st) });
    if (!st.alive || seq !== st.seq) return;
    clearErrors(st);
    const e = data.estimate || {};
    box.innerHTML = String(html`Predicted FLOP saving <strong id="predicted-saving">${pct(e.predicted_flop_saving)}</strong>
      <span class="muted hide-sm"> · full step ${gflops(e.flops_full_step)}, reduced step ${gflops(e.flops_reduced_step)}, ${pct(e.reduced_fraction, 0)} of steps reduced</span>`);
  } catch (err) {
    if (!st.alive || seq !== st.seq) return;
    if (err.status === 422) {
      showErrors(st, err);
      box.innerHTML = String(html`<span class="neg">Fix the marked fields to see the predicted FLOP saving.</span>`);
    } else {
      box.innerHTML = String(html`<span class="muted">No prediction: ${err.message}</span>`);
    }
  }
}

function clearErrors(st) {
  st.root.querySelectorAll(".field .error").forEach((e) => { e.textContent = ""; });
  st.root.querySelectorAll("[aria-invalid]").forEach((e) => e.removeAttribute("aria-invalid"));
  st.root.querySelector("#form-errors").innerHTML = "";
  const summary = st.root.querySelector("#error-summary");
  summary.hidden = true;
  summary.innerHTML = "";
  st.root.querySelector("#advanced-errors").hidden = true;
  const se = st.root.querySelector("#sweep-error");
  if (se) se.textContent = "";
}

function showGeneral(st, messages) {
  if (!messages.length) return;
  st.root.querySelector("#form-errors").innerHTML = String(html`<div class="alert error" role="alert">${messages.length > 1 ? html`<ul style="margin:0;padding-left:18px">${messages.map((m) => html`<li>${m}</li>`)}</ul>` : messages[0]}</div>`);
}

/**
 * Put each 422 message next to the field its loc names; the rest go on top of the form. Returns
 * {first, items}: the first marked field and one {path, msg} per field error (for the error summary).
 * A summary already shown is brought up to date (live validation runs while the user fixes fields).
 */
function showErrors(st, err) {
  const wasShown = !st.root.querySelector("#error-summary").hidden;
  clearErrors(st);
  const general = [];
  const items = [];
  let first = null;
  for (const d of err.fieldErrors) {
    const loc = (d.loc || []).map(String);
    if (loc[1] === "grid" || (loc[0] === "body" && loc[1] === "grid")) {
      st.root.querySelector("#sweep-error").textContent += `${loc.slice(2).join(".") || "grid"}: ${d.msg} `;
      continue;
    }
    const path = locToPath(loc[1] === "base" ? ["body", "spec", ...loc.slice(2)] : loc);
    const el = FIELD_BY_PATH[path] && input(st, path);
    if (el && !el.closest(".field").hidden) {
      const box = st.root.querySelector("#" + fid(path) + "-err");
      box.textContent = box.textContent ? `${box.textContent}; ${d.msg}` : d.msg;
      el.setAttribute("aria-invalid", "true");
      first ||= el;
      items.push({ path, msg: d.msg });
    } else {
      general.push(`${path || "spec"}: ${d.msg}`);
    }
  }
  if (!err.fieldErrors.length) general.push(err.message);
  showGeneral(st, general);
  // Errors inside a closed Advanced part: say so on its summary line.
  const hidden = items.filter((i) => input(st, i.path).closest("details")).length;
  const badge = st.root.querySelector("#advanced-errors");
  badge.textContent = `${int(hidden)} problem${hidden === 1 ? "" : "s"}`;
  badge.hidden = !hidden;
  if (wasShown) showSummary(st, items, general);
  return { first, items, general };
}

/** The error summary at the top: each field's error as a link that opens (if need be) and focuses the field. */
function showSummary(st, items, general = []) {
  const box = st.root.querySelector("#error-summary");
  // Only errors at no field: they stay in the box under it (#form-errors), no summary.
  if (!items.length) { box.hidden = true; box.innerHTML = ""; return; }
  const n = items.length + general.length;
  st.root.querySelector("#form-errors").innerHTML = "";  // listed here instead
  const where = (path) => {
    const el = input(st, path);
    const legend = el.closest("fieldset")?.querySelector("legend")?.textContent || "";
    return el.closest("details") ? `Advanced · ${legend}` : legend;
  };
  box.innerHTML = String(html`<h2 id="error-summary-title">${n === 1 ? "One setting needs fixing" : `${int(n)} settings need fixing`} before the job can run</h2>
    <ul>${items.map((i) => html`<li><a href="#${fid(i.path)}" data-field="${i.path}"><strong>${FIELD_BY_PATH[i.path].label}</strong> (${where(i.path)}): ${i.msg}</a></li>`)}${general.map((g) => html`<li>${g}</li>`)}</ul>`);
  box.hidden = false;
}

function setMode(st, sweep) {
  st.sweep = sweep;
  st.root.querySelectorAll("[data-mode]").forEach((b) => b.setAttribute("aria-pressed", String((b.dataset.mode === "sweep") === sweep)));
  st.root.querySelector("#sweep-box").hidden = !sweep;
  st.root.querySelector("#submit-btn").textContent = sweep ? "Queue sweep" : "Submit job";
  if (sweep && !st.root.querySelector(".sweep-row")) addSweepRow(st, "dynds.schedule.p", "0.3, 0.5, 0.7");
  updateSweepCount(st);
}

const SWEEPABLE = FIELDS.filter((f) => f.type !== "pair" && f.path !== "name");

function addSweepRow(st, path = "train.seed", values = "0, 1, 2") {
  const rows = st.root.querySelector("#sweep-rows");
  const n = rows.children.length;
  const row = document.createElement("div");
  row.className = "sweep-row";
  row.innerHTML = String(html`
    <div><label for="sw-field-${n}">Field</label><select id="sw-field-${n}" class="sw-field">${SWEEPABLE.map((f) => html`<option value="${f.path}">${f.path}</option>`)}</select></div>
    <div><label for="sw-values-${n}">Values, comma-separated</label><input id="sw-values-${n}" class="sw-values" type="text" autocomplete="off">
      <div class="error sw-err" style="color:var(--bad);font-size:.83rem;font-weight:600"></div></div>
    <div><span class="muted" aria-hidden="true" style="display:block;margin-bottom:3px">&nbsp;</span><button type="button" class="btn btn-ghost sw-remove" aria-label="Remove this sweep row">Remove</button></div>`);
  row.querySelector(".sw-field").value = path;
  row.querySelector(".sw-values").value = values;
  row.querySelector(".sw-remove").addEventListener("click", () => { row.remove(); updateSweepCount(st); });
  rows.append(row);
  updateSweepCount(st);
}

/** The sweep grid from the rows: {grid, count, bad}. */
function sweepGrid(st) {
  const grid = {};
  let bad = false;
  st.root.querySelectorAll(".sweep-row").forEach((row) => {
    const path = row.querySelector(".sw-field").value;
    const { values, bad: wrong } = parseSweepValues(FIELD_BY_PATH[path], row.querySelector(".sw-values").value);
    row.querySelector(".sw-err").textContent = wrong.length ? `not a ${FIELD_BY_PATH[path].type} value: ${wrong.join(", ")}` : !values.length ? "list at least one value" : "";
    if (wrong.length || !values.length) bad = true;
    grid[path] = values;
  });
  const count = Object.values(grid).reduce((n, v) => n * Math.max(1, v.length), Object.keys(grid).length ? 1 : 0);
  return { grid, count, bad };
}

/** The seeds field: {seeds: [ints], bad: [words that are not integers]}. */
export function parseSeeds(text) {
  const seeds = [], bad = [];
  for (const part of String(text || "").split(/[,\s]+/).map((x) => x.trim()).filter(Boolean)) {
    if (/^[+-]?\d+$/.test(part)) { const n = Number(part); if (!seeds.includes(n)) seeds.push(n); } else bad.push(part);
  }
  return { seeds, bad };
}

function sweepSeeds(st) {
  const { seeds, bad } = parseSeeds(st.root.querySelector("#sweep-seeds").value);
  st.root.querySelector("#sweep-seeds-err").textContent = bad.length ? `not an integer: ${bad.join(", ")}` : "";
  return { seeds, bad: bad.length > 0 };
}

const isFrontier = (st) => st.root.querySelector("#sweep-preset").value === "frontier";

function syncSweepPreset(st) {
  st.root.querySelector("#sweep-grid-box").hidden = isFrontier(st);
}

function updateSweepCount(st) {
  if (!st.sweep) return;
  const { seeds } = sweepSeeds(st);
  const perSeed = Math.max(1, seeds.length);
  const seedWords = seeds.length ? ` × ${int(seeds.length)} seed${seeds.length === 1 ? "" : "s"}` : "";
  const out = st.root.querySelector("#sweep-count");
  if (isFrontier(st)) {
    const n = 4 * perSeed;
    out.textContent = `${int(n)} baseline run${n === 1 ? "" : "s"} will be queued (4 budgets${seedWords})`;
    return;
  }
  const { count } = sweepGrid(st);
  out.textContent = count ? `${int(count * perSeed)} job${count * perSeed === 1 ? "" : "s"} will be queued (${int(count)} combination${count === 1 ? "" : "s"}${seedWords})` : "Add a field to sweep over.";
}

function idempotencyKey() {
  return (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`);
}

async function submit(st) {
  const btn = st.root.querySelector("#submit-btn");
  const force = st.root.querySelector("#force").checked;
  const spec = buildSpec(st);
  clearErrors(st);
  btn.disabled = true;
  try {
    if (st.sweep) {
      const frontier = isFrontier(st);
      const { seeds, bad: badSeeds } = sweepSeeds(st);
      const { grid, count, bad } = frontier ? { grid: {}, count: 1, bad: false } : sweepGrid(st);
      if (badSeeds) { st.root.querySelector("#sweep-error").textContent = "Fix the seeds first: comma-separated integers."; return; }
      if (bad || !count) { st.root.querySelector("#sweep-error").textContent = "Fix the sweep rows first."; return; }
      const name = st.root.querySelector("#sweep-name").value.trim() || (frontier ? "frontier" : "sweep");
      const body = { name, base: spec, grid, force };
      if (seeds.length) body.seeds = seeds;
      if (frontier) body.preset = "frontier";
      const { data } = await post("/sweeps", body);
      st.root.querySelector("#form-errors").innerHTML = String(html`<div class="alert ok" role="status">Sweep #${data.id} “${data.name}” queued ${int(data.count)} jobs:
        ${(data.jobs || []).slice(0, 30).map((j) => html` <a href="#/jobs/${j.id}">#${j.id}</a>`)}${data.count > 30 ? " …" : ""} · <a href="#/jobs">see the jobs list</a></div>${fleetWarnings(data)}`);
      st.root.querySelector("#form-errors").scrollIntoView({ block: "center" });
      return;
    }
    const { data, status } = await post("/jobs", { spec, force }, { headers: { "Idempotency-Key": idempotencyKey() } });
    if (status === 200 || data.deduplicated) {
      st.root.querySelector("#form-errors").innerHTML = String(html`<div class="alert info" role="status">An identical job already exists:
        <a href="#/jobs/${data.id}">#${data.id} ${data.name}</a> (${data.status}${data.hardware_key ? html`, measured on <span class="hw-key">${data.hardware_key}</span>` : ""}).
        Tick “Run even if an identical job exists” to train it again, or pin other hardware with train.hardware.</div>`);
      return;
    }
    if (data.warnings && data.warnings.length) {  // queued, but no live worker serves what it asks for: say so here
      st.root.querySelector("#form-errors").innerHTML = String(html`<div class="alert ok" role="status">Job <a href="#/jobs/${data.id}">#${data.id} ${data.name}</a> is queued.</div>${fleetWarnings(data)}`);
      st.root.querySelector("#form-errors").scrollIntoView({ block: "center" });
      return;
    }
    location.hash = `#/jobs/${data.id}`;
  } catch (err) {
    if (err instanceof ApiError && err.status === 422) {
      const { items, general } = showErrors(st, err);
      showSummary(st, items, general);
      if (items.length) {
        const summary = st.root.querySelector("#error-summary");
        summary.scrollIntoView({ block: "start" });
        summary.focus({ preventScroll: true });
      } else st.root.querySelector("#form-errors").scrollIntoView({ block: "center" });
    } else {
      showGeneral(st, [err.message]);
      st.root.querySelector("#form-errors").scrollIntoView({ block: "center" });
    }
  } finally {
    btn.disabled = false;
  }
}
export { esc };

/** The answer's warnings (POST /jobs, /sweeps), e.g. that no live worker serves the hardware asked for: the job waits. */
function fleetWarnings(data) {
  const warnings = (data && data.warnings) || [];
  if (!warnings.length) return "";
  return html`<div class="alert warn" role="status" id="submit-warnings">${warnings.map((w) => html`<p>${w}.</p>`)}<a href="#/workers">See the workers</a></div>`;
}
