"""Does a job know when it did not have the CPU to itself? Its runs' cpu_share and wait_share, and the
Contention flag, for a short lockstep job alone and beside processes that burn CPU.

Claim: alone on a quiet machine a run's threads wait for a CPU a few per cent of their steps' wall time
(wait_share; 0.01-0.03 at load 0.1 here) and get the rest (cpu_share 0.97-0.99); beside a competitor that
leaves them fewer cores than threads they wait a third or more, and the job is flagged contended
(Contention's default max_wait_share 0.15 sits between). The job's lockstep time_saving is printed beside,
so the harm a neighbour does to it can be read too.

Measured (2 cores, 1 round of 100 steps per run; the machine busy with other work, load 5.3-7.5):

    threads burners  cpu_share  wait_share  base step ms  time_saving  contended
          1       0  0.67 0.68   0.33 0.33          41.9        18.2%        yes   (not alone: load 5.7)
          1       1  0.34 0.34   0.65 0.67          88.5        18.0%        yes
          2       0  0.34 0.41   0.55 0.52         181.0        11.4%        yes
          2       1  0.21 0.21   0.63 0.63         951.2         7.2%        yes

With one torch thread a competitor slows the steps alike (18.2 % vs 18.0 %); with a thread per core the
parallel ops wait for their slowest thread, short reduced steps suffer more, and time_saving falls: what
the flag is for.

Conditions: one process (this one) runs every job, one after the other, conditions interleaved in rounds
(alone, then each competitor) so that drift on the machine falls on all of them; each job: ResNet-20 on
synthetic 16x16 images, batch 32, lockstep baseline and DynDS (stochastic p=0.5), --steps steps per run,
torch threads as given. A competitor is a separate Python process spinning (``while True: pass``), started
before the job and killed after it. Load average printed at the start.

    python bench/contention.py                       # threads 1 and 2, competitors 0 and 1
    python bench/contention.py --threads 2 --burners 0 1 --rounds 3

Bounded: rounds x threads x competitors jobs of a few seconds each; competitors are killed on exit.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from dynds_core.spec import JobSpec
from dynds_core.trainer import Contention, ProcessSettings, train


def job(threads: int, steps: int) -> JobSpec:
    return JobSpec.parse(
        {
            "name": "contention",
            "model": {"arch": "resnet20"},
            "data": {"dataset": "synthetic", "synthetic_size": 32 * steps, "image_size": 16},
            "train": {"epochs": 1, "batch_size": 32, "lr": 0.05, "device": "cpu", "num_threads": threads},
            "dynds": {"schedule": {"kind": "stochastic", "p": 0.5}},
            "equal_time_baseline": False,
        }
    )


def burners(n: int) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    time.sleep(0.5)  # running before the job starts
    return procs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--burners", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=100, help="steps per run")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    contention = Contention()
    load0 = os.getloadavg()[0]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the competitors' finally runs
    print(
        f"contention: {args.rounds} rounds, {args.steps} steps per run, lockstep; {os.cpu_count()} cores, "
        f"load average {load0:.2f} at the start; python {sys.version.split()[0]}; {contention}"
    )
    print(f"  {'threads':>7}{'burners':>8}{'cpu_share':>11}{'wait_share':>12}{'base step ms':>14}{'time_saving':>13}  contended  load")
    train(job(1, 8))  # the process's one-off costs, outside the figures
    for _ in range(args.rounds):
        for threads in args.threads:
            for n in args.burners:
                procs = burners(n)
                try:
                    r = train(job(threads, args.steps), process=ProcessSettings.measured(), contention=contention)
                finally:
                    for proc in procs:
                        proc.kill()
                        proc.wait()
                runs = (r.baseline, r.dynds)
                cpu = " ".join(f"{x.cpu_share:.2f}" for x in runs)
                wait = " ".join(f"{x.wait_share:.2f}" if x.wait_share is not None else "-" for x in runs)
                step = 1000 * r.baseline.train_time_s / max(r.baseline.steps, 1)
                flagged = "yes" if r.contended else "no"
                load = os.getloadavg()[0]
                print(f"  {threads:>7}{n:>8}  {cpu:>9}  {wait:>10}{step:>14.1f}{r.time_saving:>13.1%}  {flagged:>9}  {load:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
