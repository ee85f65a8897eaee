// A DynDS setting's name for people. The API names a setting by its key (app/leaderboard.py setting_key:
// "schedule | kernel | input | bn", e.g. "stochastic p=0.5 | avg k2s1 sum | in/2 avg | bn frozen"), which is
// exact but long; the pages show it short, the parts at their defaults left out, and keep the key on hover.
// Pure functions.

const num = (s) => String(Number(s));
const pctOf = (s) => `${+(Number(s) * 100).toFixed(1)} %`;

/** The defaults the short name leaves out: from GET /meta's defaults.dynds when given. */
export function labelDefaults(dynds) {
  const d = dynds || {};
  return {
    bn: d.bn ?? "frozen",
    inputMode: (d.input && d.input.mode) ?? "avg",
    scale: (d.kernel && d.kernel.scale) ?? "sum",
    padSide: (d.kernel && d.kernel.pad_side) ?? "alternate",
  };
}

function scheduleWords(s) {
  let m, ff = "";
  const cut = s.match(/^(.*) ff=([\d.e+-]+)$/);
  if (cut) { s = cut[1]; ff = ` · last ${pctOf(cut[2])} full`; }
  if ((m = s.match(/^stochastic p=([\d.e+-]+)(?:->([\d.e+-]+))?$/))) return `p=${num(m[1])}${m[2] !== undefined ? `→${num(m[2])}` : ""}${ff}`;
  if ((m = s.match(/^periodic every=(\d+)$/))) return `${Number(m[1]) - 1} of ${m[1]} reduced${ff}`;
  if ((m = s.match(/^periodic (\S+)$/))) return `pattern ${m[1]}${ff}`;
  if ((m = s.match(/^phase ([\d.e+-]+)-([\d.e+-]+)$/))) return `reduced ${pctOf(m[1]).replace(" %", "")}–${pctOf(m[2])} of training${ff}`;
  if ((m = s.match(/^adaptive p=([\d.e+-]+)-([\d.e+-]+) w=(\d+)$/))) return `adaptive p ${num(m[1])}–${num(m[2])}, window ${m[3]}${ff}`;
  if (s === "none") return `never reduced${ff}`;
  // DynDS's relatives (their keys name their method): progressive resizing, Mix&Match
  if ((m = s.match(/^progressive x([\d.e+-]+) delay=([\d.e+-]+) ft=([\d.e+-]+) \+(\d+)px$/))) {
    return `progressive resizing ×${num(m[1])}→1 after ${pctOf(m[2])}, full for the last ${pctOf(m[3])}${ff}`;
  }
  if ((m = s.match(/^mixsize x(\S+) p=(\S+)$/))) return `Mix&Match sizes ×${m[1]} (p ${m[2]})${ff}`;
  return null;
}

function kernelWords(s, d) {
  let m;
  if (s === "kernel none" || s === "kernel full") return "full kernels";
  const pad = s.match(/^(.*) pad-(\w+)$/);
  const side = pad ? pad[2] : d.padSide;
  if (pad) s = pad[1];
  const extras = (scale) => `${scale !== d.scale ? (scale === "none" ? " unscaled" : ` ${scale}`) : ""}${side !== d.padSide ? ` pad ${side}` : ""}`;
  if ((m = s.match(/^resize (\d+)x(\d+) (\w+)$/))) return `kernels resized to ${m[1]}×${m[2]}${extras(m[3])}`;
  if ((m = s.match(/^(\w+) k(\d+)s(\d+) (\w+)$/))) return `${m[2]}×${m[2]} ${m[1]}${m[3] !== "1" ? ` stride ${m[3]}` : ""}${extras(m[4])}`;
  return null;
}

/**
 * settingLabel("stochastic p=0.5 | avg k2s1 sum | in/2 avg | bn frozen") -> "p=0.5 · 2×2 avg · input /2";
 * a key it cannot read comes back as it is.
 */
export function settingLabel(key, defaults = labelDefaults()) {
  const parts = String(key || "").split(" | ");
  if (parts.length === 1) return scheduleWords(parts[0]) ?? (key || "");  // a schedule alone
  // a fifth part: FixRes BatchNorm recalibration ("bn recal 50")
  const recal = parts.length === 5 ? parts[4].match(/^bn recal (\d+)$/) : null;
  if (parts.length !== 4 && !recal) return key || "";
  const [schedule, kernel, input, bn] = parts;
  const s = scheduleWords(schedule), k = kernelWords(kernel, defaults);
  // a relative's input part has no factor ("in avg"): its sizes are the schedule's
  const i = input.match(/^in(?:\/(\d+))? (\w+)$/), b = bn.match(/^bn (\w+)$/);
  if (s === null || k === null || !i || !b) return key;
  const mode = i[2] !== defaults.inputMode ? ` ${i[2]}` : "";
  const words = [s, k, i[1] ? `input /${i[1]}${mode}` : `input resized${mode}`];
  if (b[1] !== defaults.bn) words.push(`BN ${b[1]}`);
  if (recal) words.push(`BN recalibrated (${recal[1]} batches)`);
  return words.join(" · ");
}
