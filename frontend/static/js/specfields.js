// Every JobSpec field (dynds_core/spec.py), as the submit form shows it. Pure data + pure functions.
// type: int | float | bool | choice | text; nullable: empty input means null; choices: a list or a /meta key;
// wrap: the spec holds {wrap: value} (a one-key section), the form the value.
export const SECTIONS = [
  { id: "job", title: "Job", fields: [
    { path: "name", label: "Name", type: "text", hint: "a label for lists; not part of the spec hash" },
    { path: "baseline", label: "Run the paired baseline", type: "bool", hint: "needed for time saving and accuracy Δ" },
    { path: "equal_time_baseline", label: "Run the equal-time baseline", type: "bool", hint: "baseline cut to DynDS's train time" },
  ] },
  { id: "model", title: "Model", fields: [
    { path: "model.arch", label: "Architecture", type: "choice", choices: "arch" },
    { path: "model.small_input", label: "Small-input stem", type: "bool", hint: "torchvision ResNets: 3×3 stem, no max-pool" },
  ] },
  { id: "data", title: "Data", fields: [
    { path: "data.dataset", label: "Data set", type: "choice", choices: "dataset" },
    { path: "data.root", label: "Root directory", type: "text", nullable: true, hint: "empty: the loader's default place" },
    { path: "data.train_subset", label: "Training subset", type: "int", nullable: true, min: 10, hint: "images; empty: all" },
    { path: "data.val_subset", label: "Validation subset", type: "int", nullable: true, min: 10, hint: "images; empty: all" },
    { path: "data.augment", label: "Augment (crop + flip)", type: "bool" },
    { path: "data.normalize", label: "Normalize", type: "bool" },
    { path: "data.download", label: "Download the data set", type: "bool", hint: "CIFAR only; needs a network", only: { "data.dataset": ["cifar10", "cifar100"] } },
    { path: "data.synthetic_size", label: "Synthetic size", type: "int", min: 16, max: 100000, hint: "images (synthetic only)", only: { "data.dataset": "synthetic" } },
    { path: "data.image_size", label: "Image size", type: "int", min: 8, max: 512, hint: "pixels (synthetic only)", only: { "data.dataset": "synthetic" } },
    { path: "data.num_classes", label: "Classes", type: "int", min: 2, max: 1000, hint: "synthetic only", only: { "data.dataset": "synthetic" } },
  ] },
  { id: "train", title: "Training", fields: [
    { path: "train.epochs", label: "Epochs", type: "int", min: 1, max: 1000 },
    { path: "train.batch_size", label: "Batch size", type: "int", min: 2, max: 8192, hint: "images per step" },
    { path: "train.optimizer", label: "Optimizer", type: "choice", choices: ["sgd", "adamw"] },
    { path: "train.lr", label: "Peak learning rate", type: "float", min: 0, max: 100, step: "any", hint: "per batch of batch size" },
    { path: "train.momentum", label: "Momentum", type: "float", min: 0, max: 1, step: "any" },
    { path: "train.nesterov", label: "Nesterov", type: "bool" },
    { path: "train.weight_decay", label: "Weight decay", type: "float", min: 0, max: 1, step: "any" },
    { path: "train.lr_schedule", label: "LR schedule", type: "choice", choices: ["onecycle", "cosine", "step", "constant"] },
    { path: "train.warmup_epochs", label: "Warm-up", type: "float", min: 0, step: "any", hint: "epochs (not onecycle)" },
    { path: "train.label_smoothing", label: "Label smoothing", type: "float", min: 0, max: 1, step: "any" },
    { path: "train.seed", label: "Seed", type: "int", min: 0 },
    { path: "train.pairing", label: "Baseline timing", type: "choice", choices: ["lockstep", "sequential"], hint: "lockstep: DynDS and baseline alternate step by step (same machine load); sequential: one after the other (half the memory)" },
    { path: "train.device", label: "Device", type: "text", list: ["auto", "cpu", "cuda", "cuda:0", "cuda:1"], hint: "auto, cpu, cuda or cuda:N" },
    { path: "train.hardware", label: "Hardware", type: "text", list: ["auto", "cpu", "cuda"], hint: "auto: whatever the worker has (the result records it); or a device kind, hardware class or device model to run on" },
    { path: "train.amp", label: "Mixed precision", type: "bool" },
    { path: "train.channels_last", label: "Channels-last", type: "bool" },
    { path: "train.checkpoint_every_s", label: "Checkpoint every (s)", type: "float", min: 0, max: 604800, step: "any", hint: "seconds of training between checkpoints, 0 for none (dynds train --checkpoint-dir; the service does not keep them yet); not part of the recipe" },
    { path: "train.num_threads", label: "Torch threads", type: "int", nullable: true, min: 1, max: 256, hint: "empty: the worker's setting" },
    { path: "train.target_accuracy", label: "Target accuracy", type: "float", nullable: true, min: 0, max: 100, step: "any", hint: "% for time-to-target; empty: none" },
  ] },
  { id: "dynds", title: "DynDS: reduced batches", fields: [
    { path: "dynds.input.factor", label: "Input downsample factor", type: "int", min: 2, max: 8, hint: "2: 32×32 → 16×16" },
    { path: "dynds.input.mode", label: "Input mode", type: "choice", choices: "input_mode" },
    { path: "dynds.kernel.mode", label: "Kernel pooling", type: "choice", choices: "kernel_mode" },
    { path: "dynds.kernel.window", label: "Kernel window", type: "int", min: 2, max: 4 },
    { path: "dynds.kernel.stride", label: "Kernel stride", type: "int", min: 1, max: 4 },
    { path: "dynds.kernel.size", label: "Kernel size (resize)", type: "pair", nullable: true, hint: "h, w — resize mode only" },
    { path: "dynds.kernel.scale", label: "Kernel scale", type: "choice", choices: ["sum", "none"] },
    { path: "dynds.kernel.pad_side", label: "Even-kernel padding", type: "choice", choices: ["end", "start", "alternate"] },
    { path: "dynds.bn", label: "Batch norm", type: "choice", choices: "bn" },
    // FixRes: a section ({batches: N}) or null; the form holds its one number.
    { path: "dynds.bn_recalibration", label: "BN recalibration", type: "int", nullable: true, wrap: "batches", min: 1, max: 10000, hint: "FixRes: batches to recompute BatchNorm statistics after training; empty: off" },
  ] },
  { id: "schedule", title: "Schedule: which batches run reduced", fields: [
    { path: "dynds.schedule.kind", label: "Kind", type: "choice", choices: "schedule_kind" },
    { path: "dynds.schedule.final_full_fraction", label: "Final full fraction", type: "float", min: 0, max: 1, step: "any", hint: "last part of training always full", only: { "dynds.schedule.kind": ["stochastic", "periodic", "phase", "adaptive", "none", "progressive", "mixsize"] } },
    { path: "dynds.schedule.p", label: "p (reduced)", type: "float", min: 0, max: 1, step: "any", hint: "probability a batch is reduced", only: { "dynds.schedule.kind": "stochastic" } },
    { path: "dynds.schedule.p_end", label: "p at the end", type: "float", nullable: true, min: 0, max: 1, step: "any", hint: "anneal linearly; empty: constant", only: { "dynds.schedule.kind": "stochastic" } },
    { path: "dynds.schedule.every", label: "Every", type: "int", nullable: true, min: 1, max: 1000, hint: "3: reduced, reduced, full", only: { "dynds.schedule.kind": "periodic" } },
    { path: "dynds.schedule.pattern", label: "Pattern", type: "text", nullable: true, hint: "e.g. RRF; overrides every", only: { "dynds.schedule.kind": "periodic" } },
    { path: "dynds.schedule.start", label: "Start", type: "float", min: 0, max: 1, step: "any", hint: "fraction of training", only: { "dynds.schedule.kind": "phase" } },
    { path: "dynds.schedule.end", label: "End", type: "float", min: 0, max: 1, step: "any", hint: "fraction of training", only: { "dynds.schedule.kind": "phase" } },
    { path: "dynds.schedule.p_min", label: "p min", type: "float", min: 0, max: 1, step: "any", only: { "dynds.schedule.kind": "adaptive" } },
    { path: "dynds.schedule.p_max", label: "p max", type: "float", min: 0, max: 1, step: "any", only: { "dynds.schedule.kind": "adaptive" } },
    { path: "dynds.schedule.window", label: "Window", type: "int", min: 5, max: 10000, hint: "steps averaged", only: { "dynds.schedule.kind": "adaptive" } },
    // Relatives (Composer's ProgressiveResizing; Mix&Match's scales/probs are lists: set them in a spec file)
    { path: "dynds.schedule.initial_scale", label: "Initial scale", type: "float", min: 0, max: 1, step: "any", hint: "of the image side", only: { "dynds.schedule.kind": "progressive" } },
    { path: "dynds.schedule.delay_fraction", label: "Delay fraction", type: "float", min: 0, max: 1, step: "any", hint: "at the initial scale", only: { "dynds.schedule.kind": "progressive" } },
    { path: "dynds.schedule.finetune_fraction", label: "Finetune fraction", type: "float", min: 0, max: 1, step: "any", hint: "full size at the end", only: { "dynds.schedule.kind": "progressive" } },
    { path: "dynds.schedule.size_increment", label: "Size increment", type: "int", min: 1, max: 64, hint: "px", only: { "dynds.schedule.kind": "progressive" } },
    { path: "dynds.schedule.kernels", label: "Kernels", type: "choice", choices: ["full", "pooled"], hint: "pooled: DynDS's kernels at the size over the factor", only: { "dynds.schedule.kind": ["progressive", "mixsize"] } },
  ] },
];
export const FIELDS = SECTIONS.flatMap((s) => s.fields);

// What a first job needs, open at the top of the form; every other field waits under "Advanced".
// The schedule's main parameters are here (each shows for its own kind only).
export const BASIC = [
  { id: "basic-job", title: "Model and data", paths: ["name", "model.arch", "data.dataset", "data.synthetic_size", "data.image_size", "data.download"] },
  { id: "basic-train", title: "Training", paths: ["train.epochs", "train.batch_size", "train.seed"] },
  { id: "basic-schedule", title: "Schedule: which batches run reduced", paths: ["dynds.schedule.kind", "dynds.schedule.p", "dynds.schedule.every", "dynds.schedule.start", "dynds.schedule.end", "dynds.schedule.p_min", "dynds.schedule.p_max"] },
  { id: "basic-baselines", title: "Compare against", paths: ["baseline", "equal_time_baseline"] },
];
const BASIC_PATHS = new Set(BASIC.flatMap((g) => g.paths));
const rest = (ids) => SECTIONS.filter((s) => ids.includes(s.id)).flatMap((s) => s.fields).filter((f) => !BASIC_PATHS.has(f.path));
/** The sections of the Advanced part: every field that is not basic. */
export const ADVANCED = [
  { id: "data", title: "Model and data", fields: rest(["job", "model", "data"]) },
  { id: "train", title: "Training", fields: rest(["train"]) },
  { id: "dynds", title: "DynDS: reduced batches", fields: rest(["dynds"]) },
  { id: "schedule", title: "Schedule details", fields: rest(["schedule"]) },
];
export const FIELD_BY_PATH = Object.fromEntries(FIELDS.map((f) => [f.path, f]));

// Defaults per schedule kind, for when the user switches kind (the API's defaults only hold one kind).
export const SCHEDULE_DEFAULTS = {
  none: { final_full_fraction: 0 },
  stochastic: { final_full_fraction: 0, p: 0.5, p_end: null },
  periodic: { final_full_fraction: 0, every: 3, pattern: null },
  phase: { final_full_fraction: 0, start: 0, end: 0.5 },
  adaptive: { final_full_fraction: 0, p_min: 0.1, p_max: 0.9, window: 50 },
  progressive: { final_full_fraction: 0, initial_scale: 0.5, delay_fraction: 0.5, finetune_fraction: 0.2, size_increment: 4, kernels: "full" },
  mixsize: { final_full_fraction: 0, scales: [0.5, 0.75, 1], probs: [0.2, 0.3, 0.5], kernels: "full" },
};
const SCHEDULE_KINDS = Object.keys(SCHEDULE_DEFAULTS);

export function getPath(obj, path) {
  return path.split(".").reduce((o, k) => (o === null || o === undefined ? undefined : o[k]), obj);
}
export function setPath(obj, path, value) {
  const keys = path.split(".");
  let o = obj;
  for (const k of keys.slice(0, -1)) o = o[k] && typeof o[k] === "object" ? o[k] : (o[k] = {});
  o[keys[keys.length - 1]] = value;
}

/** Whether a field applies given the other values (schedule fields of the chosen kind, synthetic-only fields). */
export function applies(field, valueOf) {
  if (!field.only) return true;
  return Object.entries(field.only).every(([p, want]) => (Array.isArray(want) ? want.includes(valueOf(p)) : valueOf(p) === want));
}

/** One input's text -> the spec value (numbers stay text when unparsable, so the API names them). */
export function parseValue(field, text) {
  const value = parseBare(field, text);
  return field.wrap && typeof value === "number" ? { [field.wrap]: value } : value;
}
function parseBare(field, text) {
  if (field.type === "bool") return !!text;
  const s = typeof text === "string" ? text.trim() : text;
  if (s === "" || s === null || s === undefined) return field.nullable ? null : field.type === "text" || field.type === "choice" ? "" : null;
  if (field.type === "int") return /^[-+]?\d+$/.test(s) ? parseInt(s, 10) : s;
  if (field.type === "float") return Number.isFinite(Number(s)) ? Number(s) : s;
  if (field.type === "pair") {
    const parts = String(s).split(/[\s,x×]+/).filter(Boolean);
    return parts.length === 2 && parts.every((p) => /^\d+$/.test(p)) ? parts.map(Number) : s;
  }
  return s;
}
export function formatValue(field, value) {
  if (field.wrap && value && typeof value === "object") value = value[field.wrap];
  if (value === null || value === undefined) return "";
  if (field.type === "pair" && Array.isArray(value)) return value.join(", ");
  return String(value);
}

/** API error loc -> form field path: drop ["body","spec"] and the schedule's union tag. */
export function locToPath(loc) {
  let parts = (loc || []).map(String);
  if (parts[0] === "body") parts = parts.slice(1);
  if (parts[0] === "spec") parts = parts.slice(1);
  if (parts[0] === "dynds" && parts[1] === "schedule" && SCHEDULE_KINDS.includes(parts[2])) parts.splice(2, 1);
  // Pydantic adds tuple indexes (kernel.size.0): the field is the tuple.
  while (parts.length && /^\d+$/.test(parts[parts.length - 1]) && !FIELD_BY_PATH[parts.join(".")]) parts.pop();
  // A wrapped section's key (dynds.bn_recalibration.batches) is its field's.
  if (!FIELD_BY_PATH[parts.join(".")] && FIELD_BY_PATH[parts.slice(0, -1).join(".")]?.wrap) parts.pop();
  return parts.join(".");
}

/** Parse a sweep list ("0.3, 0.5, 0.7" or "true, false") into typed values; returns {values, bad}. */
export function parseSweepValues(field, text) {
  const items = String(text).split(/[,;\n]+/).map((s) => s.trim()).filter(Boolean);
  const values = [], bad = [];
  for (const item of items) {
    let v;
    if (field.type === "bool") v = /^(true|yes|1|on)$/i.test(item) ? true : /^(false|no|0|off)$/i.test(item) ? false : undefined;
    else if (field.type === "pair") v = parseValue(field, item.replace(/[()[\]]/g, ""));
    else if (/^null$/i.test(item) && field.nullable) v = null;
    else v = parseValue(field, item);
    const bare = field.wrap && v && typeof v === "object" ? v[field.wrap] : v;
    if (v === undefined || ((field.type === "int" || field.type === "float") && bare !== null && typeof bare !== "number")) bad.push(item); else values.push(v);
  }
  return { values, bad };
}
