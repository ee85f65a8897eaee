// One progress figure for a whole job. The API's `progress` is the current run's alone ({run, fraction,
// epoch, epochs, step, total_steps}); a job trains up to three runs, so a bar fed that fraction would fill
// and restart for each. Pure functions.

const RUN_WORDS = { dynds: "DynDS", baseline: "baseline", equal_time: "equal-time baseline" };

/**
 * The runs a spec trains, in the worker's order, as phases: under lockstep pairing (the default) the
 * paired baseline and the DynDS run step in turn in one phase; sequential runs the baseline first. The
 * equal-time baseline comes last. jobPhases({baseline: true, equal_time_baseline: true})
 * -> [{runs: ["baseline", "dynds"]}, {runs: ["equal_time"]}]
 */
export function jobPhases(spec) {
  const s = spec || {};
  const baseline = s.baseline !== false;  // JobSpec's default: true
  const pairing = (s.train && s.train.pairing) || "lockstep";
  const phases = [];
  if (baseline && pairing === "lockstep") phases.push({ runs: ["baseline", "dynds"] });
  else {
    if (baseline) phases.push({ runs: ["baseline"] });
    phases.push({ runs: ["dynds"] });
  }
  if (s.equal_time_baseline) phases.push({ runs: ["equal_time"] });
  return phases;
}

const clamp01 = (v) => Math.max(0, Math.min(1, Number.isFinite(v) ? v : 0));

/**
 * Overall progress of a running job: every run counts the same (the equal-time run is shorter, but its
 * length is only known once it starts). null without a progress record.
 * overallProgress({equal_time_baseline: true}, {run: "equal_time", fraction: 0.5}) -> {fraction: 0.8333, ...}
 */
export function overallProgress(spec, progress) {
  if (!progress) return null;
  const phases = jobPhases(spec);
  const runs = phases.reduce((n, ph) => n + ph.runs.length, 0);
  let i = phases.findIndex((ph) => ph.runs.includes(progress.run));
  if (i < 0) i = 0;  // a run this spec does not name: count it as the first
  const before = phases.slice(0, i).reduce((n, ph) => n + ph.runs.length, 0);
  const phase = phases[i];
  const runFraction = clamp01(progress.fraction);
  return {
    fraction: (before + runFraction * phase.runs.length) / runs,
    runFraction, runs, phase, first: before + 1, last: before + phase.runs.length,
  };
}

/** "runs 1–2 of 3: baseline and DynDS in lockstep" / "run 3 of 3: equal-time baseline". */
export function phaseWords(o) {
  if (!o) return "";
  const names = o.phase.runs.map((r) => RUN_WORDS[r] || r);
  return o.first === o.last
    ? `run ${o.first} of ${o.runs}: ${names[0]}`
    : `runs ${o.first}–${o.last} of ${o.runs}: ${names.join(" and ")} in lockstep`;
}
