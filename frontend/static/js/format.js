// Numbers with units, the same everywhere. Fractions (0.31) are shown as percent, deltas of
// percentages as percentage points ("pt", as the verdict sentences write them). A missing value is
// "—" unless the caller says in words why it is missing (the last argument of most helpers).
const nf = (digits) => new Intl.NumberFormat("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const fmt0 = nf(0), fmt1 = nf(1), fmt2 = nf(2);
const MINUS = "\u2212";

const missing = (v) => v === null || v === undefined || Number.isNaN(v);
const signed = (s, v) => (v > 0 ? "+" + s : v < 0 ? MINUS + s.replace("-", "") : s);

export function pct(fraction, digits = 1, none = "—") {  // 0.312 -> "31.2 %"
  if (missing(fraction)) return none;
  const s = nf(digits).format(fraction * 100);
  return (fraction < 0 ? MINUS + s.replace("-", "") : s) + " %";
}
export function pctOf(percent, digits = 1, none = "—") {  // 70.12 (already percent) -> "70.1 %"
  return missing(percent) ? none : nf(digits).format(percent) + " %";
}
export function pt(delta, digits = 2, none = "—") {    // -0.4 -> "−0.40 pt" (percentage points)
  return missing(delta) ? none : signed(nf(digits).format(delta), delta) + " pt";
}
/** The old name: the same figure, written in points. */
export const pp = pt;
const signedNum = (v, digits) => signed(nf(digits).format(v), v);
const goodCI = (ci) => Array.isArray(ci) && ci.length === 2 && !missing(ci[0]) && !missing(ci[1]);
/** A fraction's mean with its 95 % interval, in percent: (0.31, [0.27, 0.35]) -> "31 % [27, 35]". */
export function pctCI(mean, ci, digits = 0, none = "—") {
  if (missing(mean)) return none;
  const s = pct(mean, digits);
  return goodCI(ci) ? `${s} [${signedNum(ci[0] * 100, digits).replace("+", "")}, ${signedNum(ci[1] * 100, digits).replace("+", "")}]` : s;
}
/** A difference in points with its 95 % interval: (-0.3, [-0.8, 0.2]) -> "−0.3 pt [−0.8, +0.2]". */
export function ptCI(mean, ci, digits = 1, none = "—") {
  if (missing(mean)) return none;
  const s = pt(mean, digits);
  return goodCI(ci) ? `${s} [${signedNum(ci[0], digits)}, ${signedNum(ci[1], digits)}]` : s;
}
/** An accuracy (already percent) with its 95 % interval: (70.1, [69.5, 70.7]) -> "70.1 % [69.5, 70.7]". */
export function pctOfCI(mean, ci, digits = 1, none = "—") {
  if (missing(mean)) return none;
  const s = pctOf(mean, digits);
  return goodCI(ci) ? `${s} [${nf(digits).format(ci[0])}, ${nf(digits).format(ci[1])}]` : s;
}
export function secs(s, none = "—") {                  // 250 -> "250 s", 3.2 -> "3.20 s"
  if (missing(s)) return none;
  if (s >= 100) return fmt0.format(s) + " s";
  if (s >= 10) return fmt1.format(s) + " s";
  return fmt2.format(s) + " s";
}
export function gflops(flops, none = "—") {            // 3.1e10 -> "31.0 GFLOPs"
  if (missing(flops)) return none;
  const g = flops / 1e9;
  if (g >= 1e6) return fmt1.format(g / 1e6) + " PFLOPs";
  if (g >= 1e3) return fmt1.format(g / 1e3) + " TFLOPs";
  return (g >= 100 ? fmt0 : g >= 1 ? fmt1 : fmt2).format(g) + " GFLOPs";
}
export function int(n, none = "—") { return missing(n) ? none : fmt0.format(n); }
export function num(v, digits = 3) {
  if (missing(v)) return "—";
  return Number.isInteger(v) ? fmt0.format(v) : String(+v.toPrecision(digits + 1));
}
export function pm(mean, std, f) {                     // "31.0 % ± 1.2 %"
  if (missing(mean)) return "—";
  return missing(std) || !std ? f(mean) : `${f(mean)} ± ${f(Math.abs(std)).replace(/^[+\u2212]/, "")}`;
}
export function signClass(v) { return missing(v) || v === 0 ? "" : v > 0 ? "pos" : "neg"; }

export function when(iso, none = "—") {
  if (!iso) return none;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const ago = (Date.now() - d.getTime()) / 1000;
  if (ago >= 0 && ago < 60) return "just now";
  if (ago >= 0 && ago < 3600) return `${Math.floor(ago / 60)} min ago`;
  if (ago >= 0 && ago < 86400) return `${Math.floor(ago / 3600)} h ago`;
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}
export function duration(startIso, endIso, none = "—") {
  if (!startIso) return none;
  const end = endIso ? new Date(endIso) : new Date();
  return secs(Math.max(0, (end - new Date(startIso)) / 1000));
}

const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export function esc(v) { return v === null || v === undefined ? "" : String(v).replace(/[&<>"']/g, (c) => ESC[c]); }

/** Tagged template that escapes interpolations unless wrapped with raw(). */
export function html(strings, ...values) {
  let out = strings[0];
  values.forEach((v, i) => {
    out += Array.isArray(v) ? v.map((x) => (x && x.__raw !== undefined ? x.__raw : esc(x))).join("") : v && v.__raw !== undefined ? v.__raw : esc(v);
    out += strings[i + 1];
  });
  return { __raw: out, toString() { return out; } };
}
export const raw = (s) => ({ __raw: String(s), toString() { return String(s); } });
