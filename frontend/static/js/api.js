// The only door to the server: the public REST API (docs/api.md) on the same origin.
export const API = "/api/v1";
const TOKEN_KEY = "dynds.token";

// The token lives in sessionStorage: this tab only, gone when it closes (never in localStorage, where
// it would outlive the session and be read by every page of the origin later on).
export function getToken() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
  try { localStorage.removeItem(TOKEN_KEY); } catch { /* storage disabled */ }
}
try { localStorage.removeItem(TOKEN_KEY); } catch { /* a token an older dashboard kept there: dropped */ }

/**
 * An API failure, with a message a person can act on. `status` 0 means the server was unreachable.
 * Error bodies are RFC 9457 problems (docs/api.md): `detail` a sentence, `errors` the fields of a 422
 * ({loc, msg, type} each), `type` a stable https://dynds.dev/problems/... URI, `request_id` for a 500.
 */
export class ApiError extends Error {
  constructor(status, message, detail = null, problem = null) {
    super(message);
    this.status = status;
    this.detail = detail;
    this.problem = problem;
  }
  get fieldErrors() {
    const errors = this.problem && this.problem.errors;
    if (Array.isArray(errors)) return errors;
    return Array.isArray(this.detail) ? this.detail : [];
  }
  get type() { return (this.problem && this.problem.type) || null; }
}

function authHeaders() {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function describe(status, detail, method, problem = null) {
  if (problem && Array.isArray(problem.errors) && problem.errors.length) {
    return problem.errors.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  }
  if (status === 401) return "This server needs an API token for " + (method === "GET" ? "reading" : "changes") + ". Set one with the “API token” button.";
  if (status === 403) return "The server refused the API token. Check it with the “API token” button.";
  if (status === 413) return "The request is too large for the server.";
  if (status >= 500 && problem && problem.request_id) return `${typeof detail === "string" ? detail : "The server failed."} (request id ${problem.request_id})`;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  return `The server answered ${status}.`;
}

/** The request index.html started for the first page, used once when the page asks for the same URL. */
function takePrefetch(method, url) {
  const p = window.__dyndsPrefetch;
  if (method !== "GET" || !p || p.url !== url) return null;
  window.__dyndsPrefetch = null;
  return p.resp;
}

export async function request(method, path, { body, query, headers } = {}) {
  let url = API + path;
  if (query) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") qs.set(k, v);
    const s = qs.toString();
    if (s) url += "?" + s;
  }
  let resp;
  try {
    resp = await (takePrefetch(method, url) || fetch(url, {
      method,
      headers: { Accept: "application/json", ...(body !== undefined ? { "Content-Type": "application/json" } : {}), ...authHeaders(), ...headers },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    }));
  } catch (err) {
    throw new ApiError(0, `Cannot reach the dynds server at ${location.origin}. Is “dynds serve” running?`);
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!resp.ok) {
    const problem = data && typeof data === "object" && !Array.isArray(data) ? data : null;
    const detail = problem ? problem.detail : data;
    throw new ApiError(resp.status, describe(resp.status, detail, method, problem), detail, problem);
  }
  return { data, status: resp.status };
}

export const get = (path, query) => request("GET", path, { query }).then((r) => r.data);
export const post = (path, body, opts = {}) => request("POST", path, { body, ...opts });

/** URL for a plain link (downloads). */
export function apiUrl(path, query = {}) {
  const qs = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  const s = qs.toString();
  return API + path + (s ? "?" + s : "");
}

let metaPromise = null;
export function meta({ refresh = false } = {}) {
  if (!metaPromise || refresh) metaPromise = get("/meta").catch((err) => { metaPromise = null; throw err; });
  return metaPromise;
}

/**
 * Follow a server-sent event stream with fetch (EventSource cannot send the bearer token).
 * Reconnects with Last-Event-ID after a drop; returns a function that stops it.
 */
export function followEvents(path, { lastEventId = null, onEvent, onError, onOpen } = {}) {
  let stopped = false;
  let controller = null;
  let lastId = lastEventId;
  let delay = 1000;

  async function connect() {
    controller = new AbortController();
    const headers = { Accept: "text/event-stream", ...authHeaders() };
    if (lastId !== null && lastId !== undefined) headers["Last-Event-ID"] = String(lastId);
    let ended = false;
    try {
      const resp = await fetch(API + path, { headers, signal: controller.signal });
      if (!resp.ok) throw new ApiError(resp.status, describe(resp.status, null, "GET"));
      onOpen && onOpen();
      delay = 1000;
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const ev = parseEventBlock(block);
          if (!ev) continue;
          if (ev.id !== null) lastId = ev.id;
          if (ev.event === "end") ended = true;
          onEvent && onEvent(ev);
        }
      }
    } catch (err) {
      if (stopped || err.name === "AbortError") return;
      onError && onError(err);
    }
    if (!stopped && !ended) setTimeout(() => !stopped && connect(), (delay = Math.min(delay * 2, 15000)));
  }
  connect();
  return () => { stopped = true; controller && controller.abort(); };
}

/** One SSE block -> {event, id, data} (data parsed as JSON when it is JSON); null for comments. */
export function parseEventBlock(block) {
  let event = "message", id = null, data = [], any = false;
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? "" : line.slice(i + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    any = true;
    if (field === "event") event = value;
    else if (field === "id") id = value;
    else if (field === "data") data.push(value);
  }
  if (!any) return null;
  const raw = data.join("\n");
  let parsed = raw;
  try { parsed = raw ? JSON.parse(raw) : null; } catch { /* plain text */ }
  return { event, id, data: parsed };
}
