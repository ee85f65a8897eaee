// Leaderboard: per track (a recipe on one hardware key), schedule settings ranked as the API ranks them:
// means over seeds with their 95 % intervals, the verdict against the equal-time baseline, unranked cells
// after ranked ones (greyed, with the reason). Above them, for recipes measured on two or more hardware keys,
// each setting's cells side by side, one column per hardware key ("worth it on X, not on Y").
import { get, meta, apiUrl } from "../api.js";
import { settingLabel, labelDefaults } from "../setting.js";
import { html, raw, pct, pt, int, signClass, pm, pctCI, ptCI } from "../format.js";
import { kindDot, markRendered, loadingBox, emptyBox, errorBox, setHashQuery, verdictDetails, verdictWord } from "../common.js";
import { hardwareBadge, hardwareTrackOptions, verdictSpread } from "../hardware.js";

// Up to this many tracks the page shows them all; past it, one at a time (a million jobs made 512 tracks: a
// 20 MB board that took the page over a minute to draw).
export const LB_ALL_MAX = 40;

const hasCI = (ci) => Array.isArray(ci) && ci.length === 2 && ci.every((v) => v !== null && v !== undefined);

export function render(root, { query }) {
  root.innerHTML = String(html`
    <div class="page-head">
      <div><h1>Leaderboard</h1><p class="muted">Per track (model, data set, budget, recipe, on one hardware): settings ranked by mean time saving over seeds, among those within the accuracy-drop bound and with enough seeds. Brackets are 95 % intervals over seeds. Results measured on different hardware are never pooled.</p></div>
      <div class="actions" id="exports"></div>
    </div>
    <form class="panel filters" id="lb-filters" aria-label="Leaderboard options">
      <div class="field field-wide"><label for="lb-track">Track</label><select id="lb-track" name="track"><option value="">All tracks</option></select></div>
      <div class="field"><label for="lb-drop">Max accuracy drop (pt)</label><input id="lb-drop" name="max_acc_drop" type="number" min="0" step="0.1" inputmode="decimal"></div>
      <div class="field"><label for="lb-seeds">Min seeds to rank</label><input id="lb-seeds" name="min_seeds" type="number" min="1" step="1" inputmode="numeric"></div>
      <div class="field"><label class="check" for="lb-noisy"><input type="checkbox" id="lb-noisy" name="include_noisy"> Include noisy timing</label></div>
      <div class="field actions"><button type="submit" class="btn">Apply</button></div>
    </form>
    <div id="lb-recommendation" aria-live="polite"></div>
    <div id="lb-hardware" aria-live="polite"></div>
    <div id="lb-body" aria-live="polite">${loadingBox("the leaderboard")}</div>`);
  const form = root.querySelector("#lb-filters");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    setHashQuery("leaderboard", {
      track: form.elements.track.value, max_acc_drop: form.elements.max_acc_drop.value,
      min_seeds: form.elements.min_seeds.value, include_noisy: form.elements.include_noisy.checked ? "true" : "",
    });
  });
  form.elements.track.addEventListener("change", () => form.requestSubmit());
  form.elements.include_noisy.addEventListener("change", () => form.requestSubmit());
  const st = { root, alive: true, seq: 0, tracksKnown: false };
  root.__lb = st;
  update(root, { query });
  return () => { st.alive = false; };
}

export async function update(root, { query }) {
  const st = root.__lb;
  const seq = ++st.seq;
  const form = root.querySelector("#lb-filters");
  form.elements.max_acc_drop.value = query.max_acc_drop || "";
  form.elements.min_seeds.value = query.min_seeds || "";
  form.elements.include_noisy.checked = query.include_noisy === "true";
  root.querySelector("#exports").innerHTML = String(html`
    <a class="btn" href="${apiUrl("/export", { format: "csv", track: query.track })}" download="dynds-results.csv" id="export-csv">Export CSV</a>
    <a class="btn" href="${apiUrl("/export", { format: "json", track: query.track })}" download="dynds-results.json" id="export-json">Export JSON</a>`);
  const opts = { max_acc_drop: query.max_acc_drop, min_seeds: query.min_seeds, include_noisy: query.include_noisy };
  if (!query.track) {
    // Many tracks: the list (a few kilobytes) and a choice, not every track's board.
    const list = await get("/leaderboard/tracks").catch(() => null);
    if (!st.alive || seq !== st.seq) return;
    const tracks = (list && list.tracks) || [];
    if (tracks.length > LB_ALL_MAX) {
      if (!st.tracksKnown) { trackOptions(form.elements.track, tracks); st.tracksKnown = true; }
      form.elements.track.value = "";
      root.querySelector("#lb-recommendation").innerHTML = "";
      root.querySelector("#lb-hardware").innerHTML = "";
      root.querySelector("#lb-body").innerHTML = String(emptyBox(`${int(tracks.length)} tracks: choose one.`,
        ` They hold ${int(tracks.reduce((n, t) => n + (t.n_jobs || 0), 0))} finished jobs; the page shows one track's settings at a time.`));
      markRendered("leaderboard");
      return;
    }
  }
  let lb, all, m, byHw, rec;
  try {
    [lb, all, m, byHw, rec] = await Promise.all([
      get("/leaderboard", { track: query.track, ...opts }),
      st.tracksKnown || !query.track ? Promise.resolve(null) : get("/leaderboard/tracks"),
      meta().catch(() => null),  // the defaults a setting's short name leaves out
      // Only recipes measured on 2+ hardware keys; a server without the table (404) leaves the section out.
      // With a track, that recipe's only (the whole table is built from every track's board: 15 s cold at a million jobs).
      get("/leaderboard/hardware", { ...opts, min_hardware: 2, track: query.track }).catch((err) => (err.status === 404 ? null : { error: err })),
      // What to use, per track: the headline above the tables (a server without it: no headline).
      get("/recommendation", { track: query.track, min_seeds: query.min_seeds, include_noisy: query.include_noisy }).catch(() => null),
    ]);
  } catch (err) {
    if (st.alive && seq === st.seq) { root.querySelector("#lb-body").innerHTML = String(errorBox(err)); markRendered("leaderboard"); }
    return;
  }
  if (!st.alive || seq !== st.seq) return;
  st.labelDefaults = labelDefaults(m && m.defaults && m.defaults.dynds);
  if (!st.tracksKnown) {
    trackOptions(form.elements.track, (all || lb).tracks || []);
    st.tracksKnown = true;
  }
  form.elements.track.value = query.track || "";
  if (!query.max_acc_drop && lb.max_acc_drop !== undefined) form.elements.max_acc_drop.placeholder = String(lb.max_acc_drop);
  if (!query.min_seeds && lb.min_seeds !== undefined && lb.min_seeds !== null) form.elements.min_seeds.placeholder = String(lb.min_seeds);
  const body = root.querySelector("#lb-body");
  // A server that does not know the track filter yet answers with every track: keep the chosen one.
  const tracks = (lb.tracks || []).filter((t) => !query.track || [t.track, t.track_key, t.recipe_hash].includes(query.track) || (lb.tracks || []).length === 1);
  // A track named by its key (a job page's link) shows as its label in the select.
  if (query.track && form.elements.track.value !== query.track && tracks.length === 1) form.elements.track.value = tracks[0].track;
  root.querySelector("#lb-recommendation").innerHTML = String(recommendations(rec, tracks));
  root.querySelector("#lb-hardware").innerHTML = String(byHardware(byHw, query.track ? tracks : null, st.labelDefaults));
  body.innerHTML = tracks.length
    ? tracks.map((t) => String(trackTable(t, lb, st.labelDefaults))).join("")
    : String(emptyBox("Nothing ranked yet.", " Settings appear here when jobs with a baseline have succeeded.", '<a href="#/submit">Submit a job</a>'));
  markRendered("leaderboard");
}

/** The headline per shown track: the setting to use (its verdict holds, best gap to the equal-time baseline) or
 * the plain "nothing tested beats training the baseline for less time", with its evidence one click away. */
function recommendations(rec, tracks) {
  const shown = new Set(tracks.map((t) => t.track_key));
  const recs = ((rec && rec.recommendations) || []).filter((r) => shown.has(r.track_key));
  if (!recs.length) return "";
  const item = (r) => {
    const e = r.evidence;
    const jobs = e ? e.job_ids.slice(0, 5).map((id) => html`<a href="#/jobs/${id}">#${id}</a>`) : [];
    const proof = e ? html` <span class="muted">Evidence: <a href="${e.link}">${e.method}, ${seedsWords(e.n_seeds)}</a>${jobs.length ? raw(" · jobs " + jobs.map(String).join(" ")) : ""}</span>` : "";
    return html`<li data-kind="${r.kind}"><strong>${r.recipe_label} ${hardwareBadge(r.hardware_key, { prefix: "on " })}:</strong> ${r.headline}${proof}</li>`;
  };
  return html`<section class="panel recommendation" aria-label="What to use"><h2>What to use</h2><ul>${raw(recs.map((r) => String(item(r))).join(""))}</ul></section>`;
}

/** The track select: one group per hardware key (a track is a recipe on one hardware), in key order. */
function trackOptions(sel, tracks) {
  // A full board's tracks carry their cells; /leaderboard/tracks only their count.
  hardwareTrackOptions(sel, tracks, (t) => [`${t.track} (${int(t.entries ? t.entries.length : t.n_settings)} settings)`, t.track]);
}

/** A cell's ranked flag and reason; older servers only send within_bound. */
function rankedOf(e, bound) {
  if (e.ranked !== undefined) return { ranked: !!e.ranked, why: e.why_unranked || (e.ranked ? null : "not ranked") };
  if (e.within_bound === false) return { ranked: false, why: `accuracy drop beyond the ${pt(bound, 1).replace("+", "")} bound` };
  return { ranked: e.rank !== null && e.rank !== undefined, why: e.rank === null ? "not ranked" : null };
}

const ciOr = (mean, ci, std, withCI, withStd) => (hasCI(ci) || std === undefined || std === null ? withCI(mean, ci) : pm(mean, std, withStd));

function trackTable(t, lb, defaults) {
  const bound = lb.max_acc_drop;
  const jobsLinks = (ids) => {
    const shown = ids.slice(0, 5).map((id) => html`<a href="#/jobs/${id}">#${id}</a>`);
    return html`${shown.map((a, i) => html`${i ? ", " : ""}${a}`)}${ids.length > 5 ? ` +${ids.length - 5}` : ""}`;
  };
  const cells = t.entries.map((e) => ({ e, ...rankedOf(e, bound) }));
  // Ranked cells first (in the server's order), then the rest, greyed.
  const ordered = [...cells.filter((c) => c.ranked), ...cells.filter((c) => !c.ranked)];
  const rows = ordered.map(({ e, ranked, why }) => {
    const seeds = e.n_seeds === 1 ? "1 seed" : `${int(e.n_seeds)} seeds`;
    const noisyNote = e.n_noisy ? html` <span class="badge noisy" title="${int(e.n_noisy)} of its jobs had noisy timing">${int(e.n_noisy)} noisy</span>` : "";
    return html`<tr class="${ranked ? "ranked" : "unranked"}" data-setting="${e.setting_key}">
    <td data-label="Rank" class="num">${ranked && e.rank !== null && e.rank !== undefined ? e.rank : html`<span class="muted">unranked</span>`}</td>
    <td data-label="Setting" class="wrap setting-cell">${kindDot(e.schedule_kind, { named: true })}<span class="setting-name" title="${e.setting_key}">${settingLabel(e.setting_key, defaults)}</span>${e.pareto ? raw(' <span class="badge pareto" title="no other setting of this track has both a higher time saving and a higher accuracy delta">Pareto</span>') : ""}
      ${!ranked && why ? html`<span class="why">not ranked: ${why}</span>` : ""}</td>
    <td data-label="Verdict" class="wrap">${e.verdict || e.verdict_sentence ? verdictDetails(e.verdict, e.verdict_sentence) : html`<span class="muted">no verdict</span>`}</td>
    <td data-label="Seeds" class="num" title="${e.seeds ? `seeds ${e.seeds.join(", ")}` : ""}">${seeds}${noisyNote}</td>
    <td data-label="Time saving" class="num ${signClass(e.time_saving_mean)}">${ciOr(e.time_saving_mean, e.time_saving_ci95, e.time_saving_std, (m, c) => pctCI(m, c, 0, "no baseline"), (v) => pct(v))}</td>
    <td data-label="Acc. Δ (pt)" class="num ${signClass(e.acc_delta_mean)}">${ciOr(e.acc_delta_mean, e.acc_delta_ci95, e.acc_delta_std, (m, c) => ptCI(m, c, 1, "no baseline"), (v) => pt(v))}</td>
    <td data-label="Gap to equal-time (pt)" class="num ${signClass(e.equal_time_gap_mean)}">${ciOr(e.equal_time_gap_mean, e.equal_time_gap_ci95, e.equal_time_gap_std, (m, c) => ptCI(m, c, 1, "no equal-time baseline"), (v) => pt(v))}</td>
    <td data-label="Jobs" class="hide-sm">${jobsLinks(e.job_ids || [])}</td></tr>`;
  });
  const nRanked = cells.filter((c) => c.ranked).length;
  const recipe = t.recipe && Object.keys(t.recipe).length
    ? html`<details class="muted" style="font-size:.85rem"><summary>recipe${t.recipe_hash ? ` ${String(t.recipe_hash).slice(0, 10)}` : ""}</summary><pre class="spec">${JSON.stringify(t.recipe, null, 2)}</pre></details>` : "";
  const heading = t.hardware_key
    ? html`<h2 class="track-title"><span class="track-recipe">${t.recipe_label || t.track}</span> ${hardwareBadge(t.hardware_key, { prefix: "on " })}</h2>`
    : html`<h2>${t.track}</h2>`;
  return html`<section class="panel" aria-label="track ${t.track}" data-track="${t.track}" data-hardware="${t.hardware_key || ""}">
    <div class="page-head" style="margin-bottom:8px"><div>${heading}${recipe}</div>
      <span class="muted">${int(nRanked)} of ${int(t.entries.length)} setting${t.entries.length === 1 ? "" : "s"} ranked · bound: accuracy drop ≤ ${pt(bound, 1, "none").replace("+", "")}${lb.min_seeds ? ` · at least ${int(lb.min_seeds)} seeds` : ""}
      · <a href="#/compare?track=${encodeURIComponent(t.track)}">budget frontier</a></span></div>
    <div class="table-wrap"><table class="cards"><thead><tr><th class="num" scope="col">Rank</th><th scope="col">Setting</th><th scope="col">Verdict</th><th class="num" scope="col">Seeds</th>
      <th class="num" scope="col" title="1 − DynDS train time ÷ paired baseline's; mean [95 % interval]">Time saving</th><th class="num" scope="col" title="DynDS − baseline val. accuracy, percentage points; mean [95 % interval]">Acc. Δ (pt)</th><th class="num" scope="col" title="DynDS − the baseline trained for the same time, percentage points; above 0: worth it">Gap to equal-time (pt)</th>
      <th class="hide-sm" scope="col">Jobs</th></tr></thead><tbody>${rows}</tbody></table></div>
    <p class="muted caption" style="font-size:.82rem">Time saving: 1 − DynDS train time ÷ its paired baseline's. Acc. Δ: DynDS − baseline accuracy. Gap: DynDS − the baseline trained for the same time (above 0: DynDS is worth it). Mean over seeds [95 % interval]; click a verdict for its sentence.</p></section>`;
}

// ---------------------------------------------------------------- by hardware (GET /leaderboard/hardware)

const seedsWords = (n) => (n === 1 ? "1 seed" : `${int(n)} seeds`);

/**
 * Per recipe measured on 2+ hardware keys: one row per setting, one column per hardware key, each entry that
 * hardware's own cell (never pooled). `shown`: the tracks the page shows when one is chosen (its recipe only).
 */
function byHardware(body, shown, defaults) {
  if (!body) return "";
  if (body.error) return html`<section class="panel" aria-labelledby="hwc-title"><h2 id="hwc-title">By hardware</h2>${errorBox(body.error)}</section>`;
  const recipes = (body.recipes || []).filter((r) => (r.hardware_keys || []).length >= 2
    && (!shown || shown.some((t) => (t.recipe_hash && t.recipe_hash === r.recipe_hash) || (t.recipe_label || t.track) === r.recipe_label)));
  return html`${recipes.map((r, i) => hardwareTable(r, i, defaults))}`;
}

function hardwareEntry(key, e) {
  if (!e) return html`<td class="wrap hw-cell hw-missing" data-label="${key}" data-hardware="${key}"><span class="muted">not measured on this hardware</span></td>`;
  const ranked = e.ranked !== undefined ? !!e.ranked : e.rank !== null && e.rank !== undefined;
  return html`<td class="wrap hw-cell" data-label="${key}" data-hardware="${key}" data-verdict="${e.verdict || ""}">
    <div class="hw-verdict">${e.verdict || e.verdict_sentence ? verdictDetails(e.verdict, e.verdict_sentence) : html`<span class="muted">no verdict</span>`}</div>
    <dl class="hw-figs">
      <dt>time saving</dt><dd class="${signClass(e.time_saving_mean)}">${pctCI(e.time_saving_mean, e.time_saving_ci95, 0, "no baseline")}</dd>
      <dt>gap to equal-time</dt><dd class="${signClass(e.equal_time_gap_mean)}">${ptCI(e.equal_time_gap_mean, e.equal_time_gap_ci95, 1, "no equal-time run")}</dd>
    </dl>
    <span class="hw-seeds"><a href="#/leaderboard?track=${encodeURIComponent(e.track || "")}" title="this hardware's track">${seedsWords(e.n_seeds)}</a>${ranked && e.rank !== null && e.rank !== undefined ? ` · rank ${e.rank}` : ""}</span>
    ${!ranked && e.why_unranked ? html`<span class="why">not ranked: ${e.why_unranked}</span>` : ""}</td>`;
}

function hardwareTable(r, i, defaults) {
  const keys = r.hardware_keys;
  const differ = r.settings.filter((s) => s.verdicts_differ).length;
  const rows = r.settings.map((s) => html`<tr class="${s.verdicts_differ ? "hw-differ" : ""}" data-setting="${s.setting_key}">
    <td data-label="Setting" class="wrap setting-cell">${kindDot(s.schedule_kind, { named: true })}<span class="setting-name" title="${s.setting_key}">${settingLabel(s.setting_key, defaults)}</span>
      ${s.verdicts_differ ? html`<span class="hw-differ-note"><strong>Verdict depends on the hardware:</strong> ${verdictSpread(s.by_hardware, verdictWord)}</span>` : ""}</td>
    ${keys.map((k) => hardwareEntry(k, s.by_hardware[k]))}</tr>`);
  const id = `hwc-title-${i}`;
  return html`<section class="panel hw-compare" aria-labelledby="${id}" data-recipe="${r.recipe_label}">
    <div class="page-head" style="margin-bottom:8px"><div><h2 id="${id}">By hardware: <span class="track-recipe">${r.recipe_label}</span></h2>
      <p class="muted">The same recipe and settings measured on ${int(keys.length)} hardware keys, side by side: each column is one hardware's own track, never pooled.</p></div>
      <span class="muted">${differ ? html`<strong class="hw-differ-count">${int(differ)} of ${int(r.settings.length)} setting${r.settings.length === 1 ? "" : "s"}</strong> change${differ === 1 ? "s" : ""} verdict with the hardware` : "the verdicts agree on every hardware"}</span></div>
    <div class="table-wrap"><table class="cards hw-table"><thead><tr><th scope="col">Setting</th>${keys.map((k) => html`<th scope="col">${hardwareBadge(k)}</th>`)}</tr></thead>
      <tbody>${rows}</tbody></table></div>
    <p class="muted caption" style="font-size:.82rem">Each cell: the verdict (click it for its sentence), mean time saving against the paired baseline and gap to the baseline trained for the same time (above 0: worth it), [95 % interval over seeds]; the seeds link to that hardware's track. Marked rows are settings whose verdict changes with the hardware.</p></section>`;
}
