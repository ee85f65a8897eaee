// Leaderboard: per track, schedule settings ranked as the API ranks them, with spread over seeds.
import { get, apiUrl } from "../api.js";
import { html, raw, pct, pp, int, signClass, pm } from "../format.js";
import { kindDot, markRendered, loadingBox, emptyBox, errorBox, setHashQuery } from "../common.js";

export function render(root, { query }) {
  root.innerHTML = String(html`
    <div class="page-head">
      <div><h1>Leaderboard</h1><p class="muted">Per track (model, data set, budget): settings within the accuracy-drop bound first, ranked by mean time saving over seeds.</p></div>
      <div class="actions" id="exports"></div>
    </div>
    <form class="panel filters" id="lb-filters" aria-label="Leaderboard options">
      <div class="field"><label for="lb-track">Track</label><select id="lb-track" name="track"><option value="">All tracks</option></select></div>
      <div class="field"><label for="lb-drop">Max accuracy drop (pp)</label><input id="lb-drop" name="max_acc_drop" type="number" min="0" step="0.1" inputmode="decimal"></div>
      <div class="field actions"><button type="submit" class="btn">Apply</button></div>
    </form>
    <div id="lb-body" aria-live="polite">${loadingBox("the leaderboard")}</div>`);
  const form = root.querySelector("#lb-filters");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    setHashQuery("leaderboard", { track: form.elements.track.value, max_acc_drop: form.elements.max_acc_drop.value });
  });
  form.elements.track.addEventListener("change", () => form.requestSubmit());
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
  root.querySelector("#exports").innerHTML = String(html`
    <a class="btn" href="${apiUrl("/export", { format: "csv", track: query.track })}" download="dynds-results.csv" id="export-csv">Export CSV</a>
    <a class="btn" href="${apiUrl("/export", { format: "json", track: query.track })}" download="dynds-results.json" id="export-json">Export JSON</a>`);
  let lb, all;
  try {
    [lb, all] = await Promise.all([
      get("/leaderboard", { track: query.track, max_acc_drop: query.max_acc_drop }),
      st.tracksKnown || !query.track ? Promise.resolve(null) : get("/leaderboard", { max_acc_drop: query.max_acc_drop }),
    ]);
  } catch (err) {
    if (st.alive && seq === st.seq) { root.querySelector("#lb-body").innerHTML = String(errorBox(err)); markRendered("leaderboard"); }
    return;
  }
  if (!st.alive || seq !== st.seq) return;
  if (!st.tracksKnown) {
    const sel = form.elements.track;
    for (const t of (all || lb).tracks || []) sel.add(new Option(`${t.track} (${int(t.entries.length)} settings)`, t.track));
    st.tracksKnown = true;
  }
  form.elements.track.value = query.track || "";
  if (!query.max_acc_drop && lb.max_acc_drop !== undefined) form.elements.max_acc_drop.placeholder = String(lb.max_acc_drop);
  const body = root.querySelector("#lb-body");
  const tracks = lb.tracks || [];
  body.innerHTML = tracks.length
    ? tracks.map((t) => String(trackTable(t, lb.max_acc_drop))).join("")
    : String(emptyBox("Nothing ranked yet.", " Settings appear here when jobs with a baseline have succeeded.", '<a href="#/submit">Submit a job</a>'));
  markRendered("leaderboard");
}

function trackTable(t, bound) {
  const jobsLinks = (ids) => {
    const shown = ids.slice(0, 5).map((id) => html`<a href="#/jobs/${id}">#${id}</a>`);
    return html`${shown.map((a, i) => html`${i ? ", " : ""}${a}`)}${ids.length > 5 ? ` +${ids.length - 5}` : ""}`;
  };
  const rows = t.entries.map((e) => html`<tr class="${e.within_bound ? "" : "muted"}">
    <td class="num">${e.rank}</td>
    <td class="wrap">${kindDot(e.schedule_kind)}<span class="mono">${e.setting_key}</span>${e.pareto ? raw(' <span class="badge pareto" title="no other setting has both a higher time saving and a higher accuracy delta">Pareto</span>') : ""}</td>
    <td class="num">${int(e.n_seeds)}</td>
    <td class="num ${signClass(e.time_saving_mean)}">${pm(e.time_saving_mean, e.time_saving_std, (v) => pct(v))}</td>
    <td class="num ${signClass(e.acc_delta_mean)}">${pm(e.acc_delta_mean, e.acc_delta_std, (v) => pp(v))}</td>
    <td class="num hide-sm">${pm(e.equal_time_gap_mean, e.equal_time_gap_std, (v) => pp(v))}</td>
    <td>${e.within_bound ? "yes" : raw('<span class="neg">no</span>')}</td>
    <td class="hide-sm">${jobsLinks(e.job_ids || [])}</td></tr>`);
  return html`<section class="panel" aria-label="track ${t.track}">
    <div class="page-head" style="margin-bottom:8px"><h2>${t.track}</h2>
      <span class="muted">${int(t.entries.length)} setting${t.entries.length === 1 ? "" : "s"} · bound: accuracy drop ≤ ${pp(bound).replace("+", "")}</span></div>
    <div class="table-wrap"><table><thead><tr><th class="num" scope="col">Rank</th><th scope="col">Setting</th><th class="num" scope="col">Seeds</th>
      <th class="num" scope="col">Time saving</th><th class="num" scope="col">Acc. Δ</th><th class="num hide-sm" scope="col">Gap to equal-time</th>
      <th scope="col">Within bound</th><th class="hide-sm" scope="col">Jobs</th></tr></thead><tbody>${rows}</tbody></table></div></section>`;
}
