"""How much slower is training while its metrics stream into the database?

Claim (issue 3): streaming metrics (MetricsSink writing to a SQLite file, flushing every 200 points or
2 s, polling the cancel flag every 0.5 s) slows training by less than 2%.

Method: the same spec (CIFAR ResNet-20, synthetic 32x32 images, batch 32, 300 steps, no baseline run,
2 torch threads) trained with and without the sink, interleaved (ABBA order per repeat, after one
unmeasured warm-up), several repeats. Time is the run's train time (the trainer's step clock, which
includes the callbacks) and the wall time of the whole train() call. Prints per-repeat times and the
median ratio with/without; the ratio is the figure to compare with 1.02.

    .venv/bin/python bench/metrics_overhead.py [--steps 300] [--repeats 4] [--threads 2]

The time spent inside the sink's hooks is also added up directly and printed as a share of train
time: on a machine shared with other work, that share is the steadier figure.

Output ends with one line `RESULT ratio_train=... ratio_wall=... time_in_sink=...%`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300, help="training steps per run")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=4, help="ABBA pairs")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--image-size", type=int, default=32)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)

    from app import crud
    from app.core.db import init_db, make_engine, session_factory
    from dynds_core import train
    from dynds_core.spec import JobSpec
    from dynds_core.trainer import ProcessSettings
    from worker.sink import MetricsSink

    spec = JobSpec.parse(
        {
            "name": "metrics-overhead",
            "model": {"arch": "resnet20"},
            "data": {"dataset": "synthetic", "image_size": args.image_size, "synthetic_size": args.steps * args.batch_size, "val_subset": 64},
            "train": {"epochs": 1, "batch_size": args.batch_size, "num_threads": args.threads},
            "baseline": False,
        }
    )
    tmp = Path(tempfile.mkdtemp(prefix="dynds-bench-"))
    engine = make_engine(f"sqlite:///{tmp / 'bench.db'}")
    init_db(engine)
    sessions = session_factory(engine)

    from dynds_core.callbacks import Callback

    class Timed(Callback):
        """Adds up the time spent inside the sink's hooks: the overhead measured directly, immune to the
        run-to-run noise of a shared machine that the with/without comparison suffers from."""

        def __init__(self, inner):
            self.inner, self.seconds = inner, 0.0

        def _timed(self, fn, *a):
            t = time.perf_counter()
            out = fn(*a)
            self.seconds += time.perf_counter() - t
            return out

        def on_run_start(self, run, info):
            self._timed(self.inner.on_run_start, run, info)

        def on_step(self, m):
            self._timed(self.inner.on_step, m)

        def on_epoch(self, m):
            self._timed(self.inner.on_epoch, m)

        def on_run_end(self, result):
            self._timed(self.inner.on_run_end, result)

        def should_stop(self):
            return self._timed(self.inner.should_stop)

    def run(with_sink: bool) -> tuple[float, float, int, float]:
        callbacks = []
        sink = timed = None
        if with_sink:
            with sessions() as s:
                job, _ = crud.submit_job(session=s, spec=spec, force=True)
                crud.claim_job(session=s, job_id=job.id, worker="bench")
            # The service's defaults (Settings.metrics_flush_every / metrics_flush_interval_s, 0.5 s cancel polls).
            sink = MetricsSink(job_id=job.id, session_factory=sessions, flush_every=200, flush_interval_s=2.0)
            timed = Timed(sink)
            callbacks = [timed]
        t0 = time.perf_counter()
        result = train(spec, callbacks, process=ProcessSettings.measured())
        if sink is not None:
            sink.close()
        wall = time.perf_counter() - t0
        return result.dynds.train_time_s, wall, (sink.points_written if sink else 0), (timed.seconds if timed else 0.0)

    print(
        f"# metrics overhead: resnet20 synthetic {args.image_size}x{args.image_size}, batch {args.batch_size}, "
        f"{args.steps} steps, {args.threads} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus",
        flush=True,
    )
    run(False)  # warm-up: allocator, caches, synthetic data generation code paths
    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    in_sink: list[float] = []
    for r in range(args.repeats):
        for with_sink in (False, True) if r % 2 == 0 else (True, False):
            train_s, wall_s, points, sink_s = run(with_sink)
            times[with_sink].append((train_s, wall_s))
            if with_sink:
                in_sink.append(sink_s / train_s)
            print(
                f"repeat {r} {'sink   ' if with_sink else 'no sink'}: train {train_s:7.3f} s  wall {wall_s:7.3f} s"
                + (f"  ({points} points written, {1000 * sink_s:.1f} ms inside the sink)" if with_sink else ""),
                flush=True,
            )

    def med(with_sink: bool, i: int) -> float:
        return statistics.median(t[i] for t in times[with_sink])

    pair_ratios = [a[0] / b[0] for a, b in zip(times[True], times[False], strict=True)]
    ratio_train, ratio_wall = med(True, 0) / med(False, 0), med(True, 1) / med(False, 1)
    print(
        f"median train time: no sink {med(False, 0):.3f} s, sink {med(True, 0):.3f} s; per-pair ratios " + ", ".join(f"{r:.4f}" for r in pair_ratios)
    )
    print(
        f"RESULT ratio_train={ratio_train:.4f} ratio_wall={ratio_wall:.4f} "
        f"median_pair_ratio={statistics.median(pair_ratios):.4f} "
        f"time_in_sink={100 * statistics.median(in_sink):.3f}% of train time (target: ratio < 1.02)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
