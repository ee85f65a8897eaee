// Workers: the fleet as it registered (GET /workers): who is alive, on which hardware, listening to which
// queues, running which job, last seen when; recently gone ones after them, greyed.
import { get } from "../api.js";
import { html, raw, when, int } from "../format.js";
import { markRendered, loadingBox, emptyBox, errorBox, setHashQuery } from "../common.js";

const POLL_MS = 5000;

let state = null;

export function render(root, { query }) {
  root.innerHTML = String(html`
    <div class="page-head">
      <div><h1>Workers</h1><p class="muted">The machines that run jobs: each worker's hardware, the queues it takes jobs from, what it runs now and when it was last heard from. A job goes to the queue its spec asks for (<code>train.device</code>, <code>train.hardware</code>); one that asks for nothing goes to the default queue, which every worker takes.</p></div>
    </div>
    <form class="panel filters" id="worker-filters" aria-label="Which workers">
      <div class="field"><label class="check" for="w-gone"><input type="checkbox" id="w-gone" name="gone"> Show gone workers</label></div>
    </form>
    <div id="workers-table" aria-live="polite">${loadingBox("workers")}</div>`);
  state = { root, query: {}, timer: null, seq: 0 };
  root.querySelector("#w-gone").addEventListener("change", (e) => setHashQuery("workers", { gone: e.target.checked ? "true" : "" }));
  update(root, { query });
  return () => { clearTimeout(state.timer); state = null; };
}

export function update(root, { query }) {
  state.query = query;
  root.querySelector("#w-gone").checked = query.gone === "true";
  load(true);
}

async function load(first) {
  if (!state) return;
  clearTimeout(state.timer);
  const seq = ++state.seq;
  const box = state.root.querySelector("#workers-table");
  let page;
  try {
    page = await get("/workers", { alive: state.query.gone === "true" ? undefined : "true" });
  } catch (err) {
    if (!state || seq !== state.seq) return;
    box.innerHTML = String(errorBox(err));
    markRendered("workers");
    return;
  }
  if (!state || seq !== state.seq) return;
  box.innerHTML = String(table(page));
  if (first) markRendered("workers");
  state.timer = setTimeout(() => load(false), POLL_MS);  // heartbeats keep coming: so does the page
}

/** alive / stopped (signed off) / gone (silent past the timeout), as words and a colour. */
export function workerState(w) {
  if (w.alive) return { word: "alive", cls: "succeeded", why: "its heartbeat is recent" };
  if (w.stopped_at) return { word: "stopped", cls: "cancelled", why: `stopped ${when(w.stopped_at)}` };
  return { word: "gone", cls: "failed", why: "no heartbeat within the timeout: killed, or its machine lost" };
}

function jobsCell(w) {
  if (!w.alive) return html`<span class="muted">—</span>`;
  if (!w.job_ids.length) return html`<span class="muted">idle</span>`;
  return raw(w.job_ids.map((id) => String(html`<a href="#/jobs/${id}">#${id}</a>`)).join(", "));
}

function table(page) {
  if (!page.data.length) {
    const gone = state.query.gone === "true";
    return emptyBox(gone ? "No worker has registered yet." : "No live worker.",
      raw(" Start one with <code>dynds worker</code> (with <code>DYNDS_BROKER_URL</code> set); <code>dynds serve</code> without a broker runs jobs itself and shows here too."),
      gone ? "" : '<a href="#/workers?gone=true">Show gone workers</a>');
  }
  const classes = [...new Set(page.data.filter((w) => w.alive).map((w) => w.hardware_class))].sort();
  const rows = page.data.map((w) => {
    const st = workerState(w);
    return html`<tr data-worker="${w.name}"${w.alive ? "" : raw(' class="unranked"')}>
      <td data-label="Worker" class="wrap"><strong>${w.name}</strong><span class="why">${w.kind === "embedded" ? "dynds serve (embedded)" : "dynds worker"} · ${w.host} · pid ${w.pid} · v${w.version}</span></td>
      <td data-label="State"><span class="badge ${st.cls}" title="${st.why}">${st.word}</span></td>
      <td data-label="Hardware" class="c-hw"><span class="badge hw" title="class ${w.hardware_class}">${w.hardware_key}</span></td>
      <td data-label="Queues" class="wrap">${raw(w.queues.map((q) => String(html`<code>${q}</code>`)).join(" "))}</td>
      <td data-label="Running" class="c-jobs">${jobsCell(w)}</td>
      <td data-label="Last seen" title="${new Date(w.last_seen).toLocaleString()}">${when(w.last_seen)}</td>
      <td data-label="Started" class="hide-sm" title="${new Date(w.started_at).toLocaleString()}">${when(w.started_at)}</td></tr>`;
  });
  return html`<div class="table-wrap"><table class="cards">
    <caption class="muted" style="text-align:left;padding:8px 10px">${int(page.live)} live ${page.live === 1 ? "worker" : "workers"}${classes.length ? `, hardware classes ${classes.join(", ")}` : ""}; a worker not heard from for ${int(page.timeout_s)} s is gone</caption>
    <thead><tr><th scope="col">Worker</th><th scope="col">State</th><th scope="col">Hardware</th><th scope="col">Queues</th>
      <th scope="col">Running</th><th scope="col">Last seen</th><th scope="col" class="hide-sm">Started</th></tr></thead>
    <tbody>${rows}</tbody></table></div>`;
}
