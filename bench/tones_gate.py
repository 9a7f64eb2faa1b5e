"""The tones gate: does a recipe learn held notes where that takes minutes? Scores the
checkpoints that bench/recipe.py --keep kept for each row by the held-note share
(held_notes.py) of clips they generate, against the training clips' own.

  python bench/recipe.py --name=NAME --cpu_minutes=6 --keep --no_score --runs=runs/gate \\
      --preset=cpu -- --decimation=9 --synthetic_set=held_notes ...   # five times: 30 minutes
  python bench/tones_gate.py --runs=runs/gate [--clips=16 --samplers=fast --final=fast,ddim,ddpm]

Each kept checkpoint of RUNS/recipe.jsonl generates --clips clips of --samples (the `cpu`
preset's clip length, 3.3 s at 2450 Hz, whatever clips the row trained on; EMA weights,
seed 0) with each of --samplers, and a row's last checkpoint, once it has trained
--cpu_minutes, with each of --final (fast: the model's fast schedule; ddim: 50 steps; ddpm:
every training step). Their held-note share is appended to RUNS/gate.jsonl with the row's
training CPU seconds at that checkpoint (what was scored before is skipped). The training
clips' own share (the same count and length, from the built-in set the row trained on) is the
`data` row.
Then prints the table: one line per row and sampler, the share at each checkpoint.
"""

import argparse
import dataclasses
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import data  # noqa: E402
import held_notes  # noqa: E402
from diffusion import generation  # noqa: E402
from network import checkpoints  # noqa: E402

DDIM_STEPS = 50


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as file:
        return [json.loads(line) for line in file if line.strip()]


def training_share(params, count):
    """The held-note share of `count` training clips of the built-in set of `params`."""
    clip_cache = data.prepare(params, None)
    clips = []
    for batch in data.train_dataset(clip_cache, params, seed=0):
        clips.extend(batch["audio"].numpy()[..., 0])
        if len(clips) >= count:
            break
    return held_notes.folder_measure(clips[:count], params.sample_rate)["held_share"]


def plan_of(params, sampler):
    return generation.make_plan(params, sampler, DDIM_STEPS if sampler == "ddim" else None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/gate")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--samples", type=int, default=8000, help="length of each clip")
    parser.add_argument("--samplers", default="fast", help="at every kept checkpoint")
    parser.add_argument("--final", default="fast,ddim,ddpm", help="at a row's last checkpoint")
    parser.add_argument("--cpu_minutes", type=float, default=30.0,
                        help="a row's budget: its last checkpoint is final once it is reached")
    args = parser.parse_args()
    table_path = os.path.join(args.runs, "gate.jsonl")
    done = {(row["name"], row["checkpoint"], row["sampler"]) for row in read_jsonl(table_path)}
    kept = [row for row in read_jsonl(os.path.join(args.runs, "recipe.jsonl")) if "kept" in row]
    last = {}
    for row in kept:
        if row["train_cpu_s"] > last.get(row["name"], {"train_cpu_s": -1})["train_cpu_s"]:
            last[row["name"]] = row
    final = {row["kept"] for row in last.values()
             if row["train_cpu_s"] >= 0.98 * args.cpu_minutes * 60}
    with open(table_path, "a") as table:
        def write(row):
            print(json.dumps(row), flush=True)
            table.write(json.dumps(row) + "\n")
            table.flush()
            done.add((row["name"], row["checkpoint"], row["sampler"]))

        for row in kept:
            model_dir = os.path.join(args.runs, row["name"])
            params = checkpoints.load_params(model_dir)
            if ("data", params.synthetic_set, "data") not in done:
                write({"name": "data", "checkpoint": params.synthetic_set, "sampler": "data",
                       "held_share": round(training_share(dataclasses.replace(
                           params, clip_samples=args.samples), args.clips), 4)})
            stage = None
            for sampler in (args.final if row["kept"] in final else args.samplers).split(","):
                if (row["name"], row["kept"], sampler) in done:
                    continue
                stage = stage or generation.Stage.load(model_dir, row["kept"])
                audio = stage.generate(args.clips, args.samples,
                                       plan=plan_of(params, sampler)).numpy()[..., 0]
                measure = held_notes.folder_measure(list(audio), params.sample_rate)
                write({"name": row["name"], "checkpoint": row["kept"], "sampler": sampler,
                       "steps": row["steps"], "train_cpu_s": row["train_cpu_s"],
                       "held_share": round(measure["held_share"], 4),
                       "rms": round(float(np.sqrt(np.mean(audio ** 2))), 4)})
    print_table(read_jsonl(table_path))


def print_table(rows):
    """The gate as a markdown table: per row, the fast sampler's share at each kept checkpoint
    (CPU-minutes, in order) and every sampler's at the last."""
    data_rows = [row for row in rows if row["sampler"] == "data"]
    points = {}
    for row in rows:
        if row["sampler"] != "data":
            points.setdefault(row["name"], []).append(row)
    print("| row | steps | fast at CPU-minutes | at the end: fast / ddim / ddpm |")
    print("| --- | --- | --- | --- |")
    for row in data_rows:
        print(f"| the training clips ({row['checkpoint']}) | | | {row['held_share']:.3f} |")
    for name, scored in points.items():
        fast = sorted((point for point in scored if point["sampler"] == "fast"),
                      key=lambda point: point["train_cpu_s"])
        end = max(point["train_cpu_s"] for point in scored)
        last = {point["sampler"]: point["held_share"] for point in scored
                if point["train_cpu_s"] == end}
        print(f"| {name} | {max(point['steps'] for point in scored)} | " + ", ".join(
            f"{point['held_share']:.3f}@{point['train_cpu_s'] / 60:.0f}" for point in fast)
              + " | " + " / ".join(f"{last[sampler]:.3f}" if sampler in last else "-"
                                   for sampler in ("fast", "ddim", "ddpm")) + " |")


if __name__ == "__main__":
    main()
