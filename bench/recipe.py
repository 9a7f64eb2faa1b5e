"""One row of the recipe table: train a configuration for a fixed CPU time, then score what it
generates against held-out music on bench/calibrate.py's protocol.

  python bench/recipe.py --name=c32l20 --minutes=25 --split=MUSIC/split \\
      --yardstick=/tmp/yardstick --runs=runs/recipe -- --residual_channels=32 --residual_layers=20

Everything after `--` goes to train.py (on top of `--preset`, default base). Training runs in
--runs/NAME on MUSIC/split/train and is stopped with SIGTERM after --minutes (it saves), or
continues there if the folder has checkpoints. Then generate.py writes --clips clips of
--seconds with `fast` (EMA weights) and they are scored against YARDSTICK/reference, the set
bench/calibrate.py wrote. Prints one JSON line: the config, steps, steps/s, peak memory,
generation time and the distances; appends it to --runs/recipe.jsonl.
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import evaluate  # noqa: E402
from params import BASE  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--split", required=True, help="bench/split_music.py's split folder")
    parser.add_argument("--yardstick", required=True, help="bench/calibrate.py's --out")
    parser.add_argument("--runs", default="runs/recipe")
    parser.add_argument("--preset", default="base")
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sampler", default="fast")
    parser.add_argument("train_flags", nargs="*")
    args = parser.parse_args()
    model_dir = os.path.join(args.runs, args.name)
    os.makedirs(model_dir, exist_ok=True)
    log_path = os.path.join(model_dir, "train.log")
    with open(log_path, "a") as log:
        started = time.perf_counter()
        training = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "train.py"), f"--preset={args.preset}",
             f"--data_dir={os.path.join(args.split, 'train')}", f"--model_dir={model_dir}",
             "--max_steps=10000000", "--log_every=50", *args.train_flags],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            training.wait(timeout=args.minutes * 60)
        except subprocess.TimeoutExpired:
            training.terminate()  # train.py saves a checkpoint and exits
            training.wait()
        train_seconds = time.perf_counter() - started
    train_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    with open(log_path) as log:
        text = log.read()
    steps = [int(m) for m in re.findall(r"^step (\d+)/", text, re.MULTILINE)]
    rates = [float(m) for m in re.findall(r"^step \d+/\d+ .* ([\d.]+) steps/s", text,
                                          re.MULTILINE)]
    saved = re.findall(r"(?:saved|stopped by SIG\w+ at step \d+; saved) (\S+ckpt-(\d+))", text)
    out = os.path.join(model_dir, "samples")
    started = time.perf_counter()
    generated = subprocess.run(
        [sys.executable, os.path.join(ROOT, "generate.py"), f"--model_dir={model_dir}",
         f"--num_samples={args.clips}", f"--seconds={args.seconds}", f"--sampler={args.sampler}",
         f"--output_dir={out}", f"--batch_size={args.clips}"],
        capture_output=True, text=True)
    if generated.returncode:
        sys.exit(f"error: generate.py failed:\n{generated.stderr[-2000:]}")
    generate_seconds = time.perf_counter() - started
    reference = evaluate.folder_features(os.path.join(args.yardstick, "reference"),
                                         BASE.sample_rate)
    scores = evaluate.distances(evaluate.folder_features(out, BASE.sample_rate), reference)
    with open(os.path.join(model_dir, "params.json")) as file:
        params = json.load(file)
    row = {"name": args.name, "flags": args.train_flags, "preset": args.preset,
           "steps": int(saved[-1][1]) if saved else (steps[-1] if steps else 0),
           "checkpoint": saved[-1][0] if saved else None,
           "train_minutes_this_call": round(train_seconds / 60, 1),
           "steps_per_s": rates[-1] if rates else None,
           "peak_rss_mb": round(train_rss),
           "generate_s_per_audio_s": round(generate_seconds / (args.clips * args.seconds), 3),
           **{key: round(value, 2) for key, value in scores.items()},
           "params": {key: params[key] for key in (
               "residual_channels", "residual_layers", "dilation_cycle", "clip_samples",
               "batch_size", "learning_rate", "noise_steps", "beta_end", "loss")}}
    print(json.dumps(row))
    with open(os.path.join(args.runs, "recipe.jsonl"), "a") as file:
        file.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
