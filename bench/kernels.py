"""`--kernels=auto` against both kinds, for training and for generation, interleaved and repeated.

  python bench/kernels.py [--repeats=3] [--spinners=0] [--cache_dir=DIR] [--jobs=train,generate]

Each repeat runs, per job, bench/train.py (steps/s, float32 like train.py's default) and
bench/generate.py --measure=forward (ms of one evaluation on 1 x 7350) once with each kind, in
turn (auto, onednn, stock), each in a fresh process: load that changes during the bench
touches every kind alike. auto reads and writes its choices in --cache_dir (default: a new
empty folder), so the first auto run of a job is a fresh machine's first run, probe included
(its wall time is reported apart). --spinners=N runs N busy-looping processes beside every
measurement (0: the machine as it is); each row says how much of the machine other processes
took meanwhile (from /proc/stat, less the measured process's own CPU time). Prints one JSON line
per measurement, then per job and kind the median and the range.
"""

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from network import kernels  # noqa: E402  (imports no TensorFlow)

COMMANDS = {
    "train": (["bench/train.py", "--precision=float32", "--steps=4", "--warmup=2"],
              "steps_per_s"),
    "generate": (["bench/generate.py", "--measure=forward"], "forward_ms"),
}


def spin():
    while True:
        pass


def measure(job, kind, cache_dir):
    """One run of `job`'s bench with `kind`: {"job", "kind", figure, "kernels" (the line the
    command printed), "others" (share of the machine other processes took), "wall_s"}."""
    command, figure = COMMANDS[job]
    env = dict(os.environ, XDG_CACHE_HOME=cache_dir)
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    before_machine = kernels._machine_busy_seconds()
    before_own = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *command, f"--kernels={kind}"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    after_own = resource.getrusage(resource.RUSAGE_CHILDREN)
    after_machine = kernels._machine_busy_seconds()
    if done.returncode:
        sys.exit(f"error: {command[0]} --kernels={kind} failed:\n{done.stderr[-2000:]}")
    own = (after_own.ru_utime + after_own.ru_stime) - (before_own.ru_utime + before_own.ru_stime)
    cores = len(os.sched_getaffinity(0))
    others = max(0.0, (after_machine - before_machine) - own) / (wall * cores)
    line = next((text for text in done.stderr.splitlines() if text.startswith("kernels:")), "")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"job": job, "kind": kind, figure: result[figure], "kernels": line,
            "others": round(others, 2), "wall_s": round(wall, 1)}


def summary(rows):
    """{job: {kind: {"median", "min", "max", "n"}}} over the rows (first auto runs included:
    their figure is timed after the probe)."""
    table = {}
    for job, (_, figure) in COMMANDS.items():
        for kind in kernels.KERNELS:
            values = [row[figure] for row in rows if row["job"] == job and row["kind"] == kind]
            if values:
                table.setdefault(job, {})[kind] = {
                    "median": statistics.median(values), "min": min(values),
                    "max": max(values), "n": len(values)}
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spinners", type=int, default=0)
    parser.add_argument("--cache_dir", help="auto's cache folder (default: a new empty one)")
    parser.add_argument("--jobs", default="train,generate")
    args = parser.parse_args()
    jobs = args.jobs.split(",")
    if unknown := set(jobs) - set(COMMANDS):
        sys.exit(f"error: --jobs: unknown {', '.join(sorted(unknown))} (train, generate)")
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="kernels-bench-")
    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.spinners)]
    for spinner in spinners:
        spinner.start()
    rows = []
    try:
        for _ in range(args.repeats):
            for job in jobs:
                for kind in kernels.KERNELS:
                    rows.append(measure(job, kind, cache_dir))
                    print(json.dumps(rows[-1]), flush=True)
    finally:
        for spinner in spinners:
            spinner.terminate()
    print(json.dumps({"cpu": kernels.cpu_info()["model"], "spinners": args.spinners,
                      "cache_dir": cache_dir, "summary": summary(rows)}))


if __name__ == "__main__":
    main()
