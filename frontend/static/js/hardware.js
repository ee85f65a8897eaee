// The hardware a result was measured on. The API names it by a readable key (dynds_core.hardware:
// "cpu · Intel Xeon · 2 threads", "cuda · NVIDIA H100 80GB HBM3 · x1", "unknown" for jobs stored before it
// was recorded); results are compared only under one key, so every figure the pages show carries it.
import { html, pct } from "./format.js";

export const UNKNOWN_HARDWARE = "unknown";

/** Words for a job's missing key (null: not run yet or no run finished; "unknown": run before hardware was recorded). */
export function hardwareMissing(key, status) {
  if (key && key !== UNKNOWN_HARDWARE) return null;
  return status === "queued" || status === "running" ? "not yet measured" : "not recorded";
}

/** The key as a badge; its whole identity on hover (and for screen readers). */
export function hardwareBadge(key, { prefix = "" } = {}) {
  if (!key) return "";
  const unknown = key === UNKNOWN_HARDWARE;
  const title = unknown ? "hardware not recorded (the job ran before dynds recorded it)" : `measured on ${key}`;
  return html`<span class="badge hw${unknown ? " hw-unknown" : ""}" title="${title}" data-hardware="${key}">${prefix}${unknown ? "hardware unknown" : key}</span>`;
}

/** memory_bytes in binary units, as devices report it: 85520809984 -> "79.6 GiB". */
export function gib(bytes, none = "not recorded") {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return none;
  const g = bytes / 2 ** 30;
  return g >= 10 ? `${g.toFixed(1)} GiB` : g >= 1 ? `${g.toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}

/**
 * The rows of a job's Hardware block, [label, value] each (value null: not recorded):
 * hardwareRows({device: "cpu", threads: 2, ...}) -> [["key", ...], ["device", "cpu"], ...].
 */
export function hardwareRows(hw) {
  const cpu = hw.device === "cpu";
  return [
    ["device", hw.device],
    ["model", hw.model],
    ["count", hw.count],
    ["torch threads", hw.threads],
    [cpu ? "memory (the machine's RAM)" : "memory (per device)", hw.memory_bytes === null || hw.memory_bytes === undefined ? null : gib(hw.memory_bytes)],
    ["torch", hw.torch || null],
    ["CUDA", hw.cuda || (cpu ? "none (CPU)" : null)],
    ["cuDNN", hw.cudnn || (cpu ? "none (CPU)" : null)],
    ["class (queue)", hw.hardware_class],
  ];
}

/** What a run's meters saw of its neighbours (JobResult runs' cpu_share, wait_share, device_others). */
export function contentionWords(run) {
  const parts = [];
  if (Number.isFinite(run.cpu_share)) parts.push(`${pct(run.cpu_share, 0)} of its CPU time`);
  if (Number.isFinite(run.wait_share)) parts.push(`${pct(run.wait_share, 0)} waiting for a CPU`);
  if (run.device_users) parts.push(`other users of its device: ${run.device_users}`);
  else if (Number.isInteger(run.device_others)) parts.push(`${run.device_others} other process${run.device_others === 1 ? "" : "es"} on its device`);
  return parts.join(" · ");
}

/**
 * Where one setting's verdicts differ across hardware, in words: the hardware keys grouped by verdict word,
 * e.g. "worth it on cuda · H100 · x1; not worth it on cpu · Xeon · 2 threads".
 */
export function verdictSpread(byHardware, word) {
  const groups = new Map();
  for (const [key, e] of Object.entries(byHardware || {})) {
    const w = word(e.verdict);
    if (!groups.has(w)) groups.set(w, []);
    groups.get(w).push(key);
  }
  return [...groups].map(([w, keys]) => `${w} on ${keys.join(" and ")}`).join("; ");
}

/** Fill a track select with one group per hardware key (a track is a recipe on one hardware), keys in order;
 *  ``option(track)`` gives each option's [text, value]. */
export function hardwareTrackOptions(sel, tracks, option) {
  const groups = new Map();
  for (const t of tracks) {
    const hw = t.hardware_key || "";
    if (!groups.has(hw)) groups.set(hw, []);
    groups.get(hw).push(t);
  }
  for (const hw of [...groups.keys()].sort()) {
    const parent = hw ? document.createElement("optgroup") : sel;
    if (hw) parent.label = `on ${hw}`;
    for (const t of groups.get(hw)) parent.append(new Option(...option(t)));
    if (hw) sel.append(parent);
  }
}
