"""Recipes and tracks: what makes two jobs comparable, their hashes, and the unique label of each track.

A recipe is the spec but its name, seed, DynDS setting, baseline flags and where the job runs
(train.device, train.num_threads, train.hardware). A track is a recipe on one hardware key, measured by
the process that ran the job (dynds_core.hardware): results from unlike hardware are never pooled. Its
key is ``<recipe hash>@<hardware key>``, its label ``<recipe label> on <hardware key>``."""

from __future__ import annotations

import copy
import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any


def track_of(spec: dict[str, Any]) -> str:
    """``arch/dataset/e{epochs}-n{train_subset or 'all'}`` from a canonical spec."""
    subset = spec["data"].get("train_subset")
    return f"{spec['model']['arch']}/{spec['data']['dataset']}/e{spec['train']['epochs']}-n{subset if subset else 'all'}"


def _num(x: float) -> str:
    return f"{x:g}"


def schedule_label(schedule: dict[str, Any]) -> str:
    kind = schedule["kind"]
    if kind == "stochastic":
        label = f"stochastic p={_num(schedule['p'])}"
        if schedule.get("p_end") is not None:
            label += f"->{_num(schedule['p_end'])}"
    elif kind == "periodic":
        label = f"periodic {schedule['pattern']}" if schedule.get("pattern") else f"periodic every={schedule['every']}"
    elif kind == "phase":
        label = f"phase {_num(schedule['start'])}-{_num(schedule['end'])}"
    elif kind == "adaptive":
        label = f"adaptive p={_num(schedule['p_min'])}-{_num(schedule['p_max'])} w={schedule['window']}"
    elif kind == "progressive":
        label = (
            f"progressive x{_num(schedule['initial_scale'])} delay={_num(schedule['delay_fraction'])} "
            f"ft={_num(schedule['finetune_fraction'])} +{schedule['size_increment']}px"
        )
    elif kind == "mixsize":
        label = f"mixsize x{'/'.join(map(_num, schedule['scales']))} p={'/'.join(map(_num, schedule['probs']))}"
    else:
        label = kind
    if schedule.get("final_full_fraction"):
        label += f" ff={_num(schedule['final_full_fraction'])}"
    return label


def kernel_label(kernel: dict[str, Any]) -> str:
    mode = kernel["mode"]
    if mode == "none":
        return "kernel none"
    if mode == "resize":
        h, w = kernel["size"]
        label = f"resize {h}x{w} {kernel['scale']}"
    else:
        label = f"{mode} k{kernel['window']}s{kernel['stride']} {kernel['scale']}"
    if kernel.get("pad_side", "alternate") != "alternate":
        label += f" pad-{kernel['pad_side']}"
    return label


# The method each schedule kind is (DynDS's own kinds, or a relative named by its source).
RELATIVE_METHODS = {"progressive": "progressive resizing (Composer)", "mixsize": "Mix&Match (Hoffer et al. 2019)"}


def method_of(dynds: dict[str, Any]) -> str:
    """The method a setting is: ``DynDS``, a relative's name, ``+ FixRes BN recalibration`` where it is on."""
    method = RELATIVE_METHODS.get(dynds["schedule"]["kind"], "DynDS")
    return f"{method} + FixRes BN recalibration" if dynds.get("bn_recalibration") else method


def setting_key(dynds: dict[str, Any]) -> str:
    """A readable, unique name for a DynDS setting, e.g. ``stochastic p=0.5 | avg k2s1 sum | in/2 avg | bn frozen``.

    A relative (progressive, mixsize) runs full kernels at sizes of its own: ``progressive x0.5 delay=0.5 ft=0.2
    +4px | kernel full | in avg | bn frozen``; with ``kernels: pooled``, DynDS's kernels at the data's size over
    the factor: ``... | kernel avg k2s1 sum at /2, else full | ...``. BatchNorm recalibration adds `` | bn recal 50``."""
    inp, sched = dynds["input"], dynds["schedule"]
    if sched["kind"] in RELATIVE_METHODS:
        kernel = f"kernel {kernel_label(dynds['kernel'])} at /{inp['factor']}, else full" if sched.get("kernels") == "pooled" else "kernel full"
        parts = [schedule_label(sched), kernel, f"in {inp['mode']}", f"bn {dynds['bn']}"]
    else:
        parts = [schedule_label(sched), kernel_label(dynds["kernel"]), f"in/{inp['factor']} {inp['mode']}", f"bn {dynds['bn']}"]
    if dynds.get("bn_recalibration"):
        parts.append(f"bn recal {dynds['bn_recalibration']['batches']}")
    return " | ".join(parts)


# ---------------------------------------------------------------- recipes: what makes numbers comparable

# Spec keys that are not part of the recipe: the job's name, the DynDS setting (the cell's other half)
# and which comparison runs were asked for. From the train section: the seed, and where the job runs (the
# hardware it measured is the track's other half; a device asked for by name is the same device as "auto").
_NOT_RECIPE = ("name", "dynds", "baseline", "equal_time_baseline")
_NOT_RECIPE_TRAIN = ("seed", "device", "num_threads", "hardware", "checkpoint_every_s")
# The hardware key of a job stored before hardware was recorded (migration 0007) or not yet run.
UNKNOWN_HARDWARE = "unknown"
HARDWARE_SEP = " on "  # between a track's recipe label and its hardware key


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _hash(obj: Any) -> str:
    return hashlib.sha256(_canon(obj).encode()).hexdigest()[:16]


def recipe_of(spec: dict[str, Any]) -> dict[str, Any]:
    """The recipe of a canonical spec: model, all of data, all of train but the seed and the device.

    Two jobs with equal recipes trained the same network on the same data the same way (but for
    the seed and the DynDS setting); on equal hardware their numbers may be pooled and compared.
    Idempotent: ``recipe_of(recipe_of(spec)) == recipe_of(spec)``.
    """
    recipe = {k: copy.deepcopy(v) for k, v in spec.items() if k not in _NOT_RECIPE}
    if isinstance(recipe.get("train"), dict):
        for k in _NOT_RECIPE_TRAIN:
            recipe["train"].pop(k, None)
    return recipe


def recipe_hash(spec: dict[str, Any]) -> str:
    """sha256 of the recipe's canonical JSON (sorted keys, no spaces), first 16 hex digits."""
    return _hash(recipe_of(spec))


def frontier_recipe(spec: dict[str, Any]) -> dict[str, Any]:
    """The recipe without ``train.epochs``: every budget of one recipe lies on one budget frontier."""
    recipe = recipe_of(spec)
    if isinstance(recipe.get("train"), dict):
        recipe["train"].pop("epochs", None)
    return recipe


def frontier_key(spec: dict[str, Any]) -> str:
    """The hash (16 hex) of ``frontier_recipe(spec)``: equal for the budgets of one recipe."""
    return _hash(frontier_recipe(spec))


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _value(v: Any) -> str:
    if v is None:
        return "unset"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, (list, dict)):
        return _canon(v)
    return str(v)


def track_labels(recipes: dict[str, dict[str, Any]]) -> dict[str, str]:
    """A unique track label per recipe hash: ``track_of(recipe)``, and where recipes share that label,
    `` · `` plus the train/data (then model) settings in which they differ (at most three), or the
    hash's first 8 hex digits when that does not tell them apart."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for h, recipe in recipes.items():
        by_label[track_of(recipe)].append(h)
    labels: dict[str, str] = {}
    for base, hashes in by_label.items():
        if len(hashes) == 1:
            labels[hashes[0]] = base
            continue
        flat = {h: _flat(recipes[h]) for h in hashes}
        paths = sorted({p for f in flat.values() for p in f}, key=lambda p: ({"train": 0, "data": 1}.get(p.split(".")[0], 2), p))
        differ = [p for p in paths if len({_canon(flat[h].get(p, None)) if p in flat[h] else "\0missing" for h in hashes}) > 1][:3]
        cand = {h: f"{base} · " + ", ".join(f"{p}={_value(flat[h].get(p))}" for p in differ) for h in hashes}
        unique = differ and len(set(cand.values())) == len(hashes)
        for h in hashes:
            labels[h] = cand[h] if unique else f"{base} · {h[:8]}"
    return labels


def hardware_of(row: dict[str, Any]) -> str:
    """The hardware key a row was measured on (``unknown`` when it was not recorded)."""
    return row.get("hardware_key") or UNKNOWN_HARDWARE


def recipe_part(row: dict[str, Any]) -> str:
    """The key of a row's recipe alone: its recipe hash, or ``track:<label>`` for a row without one."""
    return row.get("recipe_hash") or f"track:{row['track']}"


def recipe_key(row: dict[str, Any]) -> str:
    """The key of a row's track: ``<recipe part>@<hardware key>``."""
    return f"{recipe_part(row)}@{hardware_of(row)}"


def split_track_key(key: str) -> tuple[str, str]:
    """(recipe part, hardware key) of a track key."""
    part, _, hardware = key.partition("@")
    return part, hardware or UNKNOWN_HARDWARE


@dataclass(frozen=True)
class TrackIndex:
    """The tracks of some rows: recipe and unique label by track key, and each recipe's label by recipe part."""

    recipes: dict[str, dict[str, Any]]
    labels: dict[str, str]
    recipe_labels: dict[str, str]

    def resolve(self, track: str) -> str | None:
        """The track key that ``track`` names, or None: a track key or label, or a recipe hash or label without
        its hardware when that recipe was measured on one hardware key only."""
        if track in self.labels:
            return track
        found = next((k for k, label in self.labels.items() if label == track), None)
        if found is not None:
            return found
        parts = {part for part, label in self.recipe_labels.items() if track in (part, label)}
        matches = [k for k in self.labels if split_track_key(k)[0] in parts]
        return matches[0] if len(matches) == 1 else None


def track_index(rows: list[dict[str, Any]]) -> TrackIndex:
    """Every track in ``rows``, labelled: the recipe's label (unique among the recipes), `` on ``, the hardware key."""
    recipes, recipe_labels = _recipe_labels(rows)
    keys = {recipe_key(r): recipe_part(r) for r in rows}
    labels = {k: f"{recipe_labels[part]}{HARDWARE_SEP}{split_track_key(k)[1]}" for k, part in keys.items()}
    return TrackIndex({k: recipes[part] for k, part in keys.items()}, labels, recipe_labels)


def recipes_and_labels(rows: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Recipe (by track key) and unique label (by track key) of every track in ``rows`` (``track_index``)."""
    index = track_index(rows)
    return index.recipes, index.labels


def _recipe_labels(rows: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Recipe (by recipe part) and unique label (by recipe part) of every recipe in ``rows``."""
    recipes: dict[str, dict[str, Any]] = {}
    bases: dict[str, str] = {}
    for r in rows:
        k = recipe_part(r)
        if k not in bases:
            bases[k] = r["track"]
            recipes[k] = r.get("recipe") or {}
    full = {k: rec for k, rec in recipes.items() if rec.get("model") and rec.get("train") and rec.get("data")}
    labels = track_labels(full)
    for k, base in bases.items():
        if k not in labels:
            labels[k] = base
    # Recipes without a stored recipe dict cannot be told apart by their settings: by their key.
    seen: dict[str, list[str]] = defaultdict(list)
    for k, label in labels.items():
        seen[label].append(k)
    for ks in seen.values():
        if len(ks) > 1:
            for k in ks:
                labels[k] = f"{bases[k]} · {k.removeprefix('track:')[:8]}"
    return recipes, labels


def resolve_track(rows: list[dict[str, Any]], track: str) -> str | None:
    """The track key that ``track`` names among ``rows`` (``TrackIndex.resolve``), or None."""
    return track_index(rows).resolve(track)
