// Leaderboard: per track, schedule settings ranked as the API ranks them: means over seeds with their
// 95 % intervals, the verdict against the equal-time baseline, unranked cells after ranked ones (greyed,
// with the reason).
import { get, meta, apiUrl } from "../api.js";
import { settingLabel, labelDefaults } from "../setting.js";
import { html, raw, pct, pt, int, signClass, pm, pctCI, ptCI } from "../format.js";
import { kindDot, markRendered, loadingBox, emptyBox, errorBox, setHashQuery, verdictDetails } from "../common.js";

const hasCI = (ci) => Array.isArray(ci) && ci.length === 2 && ci.every((v) => v !== null && v !== undefined);

export function render(root, { query }) {
  root.innerHTML = String(html`
    <div class="page-head">
      <div><h1>Leaderboard</h1><p class="muted">Per track (model, data set, budget, recipe): settings ranked by mean time saving over seeds, among those within the accuracy-drop bound and with enough seeds. Brackets are 95 % intervals over seeds.</p></div>
      <div class="actions" id="exports"></div>
    </div>
    <form class="panel filters" id="lb-filters" aria-label="Leaderboard options">
      <div class="field"><label for="lb-track">Track</label><select id="lb-track" name="track"><option value="">All tracks</option></select></div>
      <div class="field"><label for="lb-drop">Max accuracy drop (pt)</label><input id="lb-drop" name="max_acc_drop" type="number" min="0" step="0.1" inputmode="decimal"></div>
      <div class="field"><label for="lb-seeds">Min seeds to rank</label><input id="lb-seeds" name="min_seeds" type="number" min="1" step="1" inputmode="numeric"></div>
      <div class="field"><label class="check" for="lb-noisy"><input type="checkbox" id="lb-noisy" name="include_noisy"> Include noisy timing</label></div>
      <div class="field actions"><button type="submit" class="btn">Apply</button></div>
    </form>
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
  let lb, all, m;
  try {
    [lb, all, m] = await Promise.all([
      get("/leaderboard", { track: query.track, ...opts }),
      st.tracksKnown || !query.track ? Promise.resolve(null) : get("/leaderboard", opts),
      meta().catch(() => null),  // the defaults a setting's short name leaves out
    ]);
  } catch (err) {
    if (st.alive && seq === st.seq) { root.querySelector("#lb-body").innerHTML = String(errorBox(err)); markRendered("leaderboard"); }
    return;
  }
  if (!st.alive || seq !== st.seq) return;
  st.labelDefaults = labelDefaults(m && m.defaults && m.defaults.dynds);
  if (!st.tracksKnown) {
    const sel = form.elements.track;
    for (const t of (all || lb).tracks || []) sel.add(new Option(`${t.track} (${int(t.entries.length)} settings)`, t.track));
    st.tracksKnown = true;
  }
  form.elements.track.value = query.track || "";
  if (!query.max_acc_drop && lb.max_acc_drop !== undefined) form.elements.max_acc_drop.placeholder = String(lb.max_acc_drop);
  if (!query.min_seeds && lb.min_seeds !== undefined && lb.min_seeds !== null) form.elements.min_seeds.placeholder = String(lb.min_seeds);
  const body = root.querySelector("#lb-body");
  // A server that does not know the track filter yet answers with every track: keep the chosen one.
  const tracks = (lb.tracks || []).filter((t) => !query.track || t.track === query.track || t.recipe_hash === query.track || (lb.tracks || []).length === 1);
  body.innerHTML = tracks.length
    ? tracks.map((t) => String(trackTable(t, lb, st.labelDefaults))).join("")
    : String(emptyBox("Nothing ranked yet.", " Settings appear here when jobs with a baseline have succeeded.", '<a href="#/submit">Submit a job</a>'));
  markRendered("leaderboard");
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
  return html`<section class="panel" aria-label="track ${t.track}" data-track="${t.track}">
    <div class="page-head" style="margin-bottom:8px"><div><h2>${t.track}</h2>${recipe}</div>
      <span class="muted">${int(nRanked)} of ${int(t.entries.length)} setting${t.entries.length === 1 ? "" : "s"} ranked · bound: accuracy drop ≤ ${pt(bound, 1, "none").replace("+", "")}${lb.min_seeds ? ` · at least ${int(lb.min_seeds)} seeds` : ""}
      · <a href="#/compare?track=${encodeURIComponent(t.track)}">budget frontier</a></span></div>
    <div class="table-wrap"><table class="cards"><thead><tr><th class="num" scope="col">Rank</th><th scope="col">Setting</th><th scope="col">Verdict</th><th class="num" scope="col">Seeds</th>
      <th class="num" scope="col" title="1 − DynDS train time ÷ paired baseline's; mean [95 % interval]">Time saving</th><th class="num" scope="col" title="DynDS − baseline val. accuracy, percentage points; mean [95 % interval]">Acc. Δ (pt)</th><th class="num" scope="col" title="DynDS − the baseline trained for the same time, percentage points; above 0: worth it">Gap to equal-time (pt)</th>
      <th class="hide-sm" scope="col">Jobs</th></tr></thead><tbody>${rows}</tbody></table></div>
    <p class="muted caption" style="font-size:.82rem">Time saving: 1 − DynDS train time ÷ its paired baseline's. Acc. Δ: DynDS − baseline accuracy. Gap: DynDS − the baseline trained for the same time (above 0: DynDS is worth it). Mean over seeds [95 % interval]; click a verdict for its sentence.</p></section>`;
}
