"""Searches a short inference noise schedule for the fast sampler (WaveGrad's grid search, for
unconditional generation); writes the best to MODEL_DIR/schedules/STEPS.json.

  python search_schedule.py --model_dir=runs/gtzan --steps=6 --reference=/path/to/music

Candidates are geometric-like beta sequences from a first beta to a last one with a curvature
(log-beta linear in (i / (steps - 1)) ** curvature), DiffWave's own 6-step schedule first. Each
is scored by generating --num_samples clips of --seconds (the same noise for every candidate)
and measuring evaluate.py's --metric against the reference folder; lower wins. The search stops
starting candidates after --budget_minutes. `generate.py --sampler=fast --steps=6` then uses
the schedule found.
"""

import itertools
import json
import math
import os
import sys
import time

from absl import flags

import cli

cli.quiet_tensorflow()

import numpy as np  # noqa: E402

import evaluate  # noqa: E402
from diffusion import generation, samplers  # noqa: E402
from params import UserError  # noqa: E402
from util import write_json  # noqa: E402

METRICS = ("frechet_mel", "frechet_mfcc", "kid")
FIRST_BETAS = (1e-4, 3e-4, 1e-3, 3e-3)
LAST_BETAS = (0.1, 0.2, 0.35, 0.5, 0.7, 0.9)
CURVATURES = (1.0, 0.6, 1.6)

FLAGS = flags.FlagValues()
flags.DEFINE_string("model_dir", None, "A trained model (params.json and checkpoints).",
                    flag_values=FLAGS)
flags.DEFINE_integer("steps", 6, "Length of the schedule searched.", flag_values=FLAGS)
flags.DEFINE_integer("num_samples", 8, "Clips generated per candidate.", flag_values=FLAGS)
flags.DEFINE_float("seconds", 4.0, "Length of each clip.", flag_values=FLAGS)
flags.DEFINE_enum("metric", "frechet_mel", METRICS, "evaluate.py's distance to minimise.",
                  flag_values=FLAGS)
flags.DEFINE_float("budget_minutes", 30.0, "No new candidate starts after this long.",
                   flag_values=FLAGS)
flags.DEFINE_integer("max_candidates", None, "Stop after this many candidates (default: all "
                     f"{len(FIRST_BETAS) * len(LAST_BETAS) * len(CURVATURES) + 1} for 6 steps).",
                     flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Noise of the generated clips.", flag_values=FLAGS)
flags.DEFINE_integer("window", 65536, "generate.py's --window.", flag_values=FLAGS)
evaluate.define_flags(FLAGS)


def candidates(steps):
    """Beta sequences to try, DiffWave's 6-step schedule first when steps is 6."""
    if steps == len(samplers.FAST_SCHEDULE):
        yield list(samplers.FAST_SCHEDULE)
    position = np.linspace(0, 1, steps)
    for first, last, curvature in itertools.product(FIRST_BETAS, LAST_BETAS, CURVATURES):
        exponent = math.log10(first) + position ** curvature * (math.log10(last)
                                                                - math.log10(first))
        yield [float(f"{beta:.3g}") for beta in 10 ** exponent]


def score(betas, stage, reference, rate):
    """evaluate's distances for clips generated with `betas` (None if every clip is silent)."""
    plan = samplers.fast_plan(stage.diffusion, betas)
    length = round(FLAGS.seconds * rate)
    audio = stage.generate(FLAGS.num_samples, length, FLAGS.seed, plan=plan).numpy()[..., 0]
    generated = evaluate.clips_features(audio, rate)
    if generated is None:
        return None
    return evaluate.distances(generated, reference, FLAGS.kid_subsets, FLAGS.kid_subset_size)


def search():
    if not FLAGS.model_dir:
        raise UserError("--model_dir is required (a trained model)")
    evaluate.check_flags(FLAGS, "reference")
    cli.require_positive(FLAGS, "steps", "num_samples", "seconds")
    if generation.is_cascade(FLAGS.model_dir):
        raise UserError(f"--model_dir={FLAGS.model_dir} is a cascade; search the schedule of its "
                        "sketch: give the first folder its cascade.json lists")
    stage = generation.Stage.load(FLAGS.model_dir, window=FLAGS.window)
    if stage.params.upsample_from:
        raise UserError(f"--model_dir={FLAGS.model_dir} is an upsampler; search_schedule.py "
                        "scores models that generate from noise (a cascade's sketch)")
    rate = stage.sample_rate
    reference = evaluate.folder_features(FLAGS.reference, rate)
    started = time.perf_counter()
    best, results = None, []
    for number, betas in enumerate(candidates(FLAGS.steps), 1):
        if FLAGS.max_candidates is not None and number > FLAGS.max_candidates:
            break
        if number > 1 and time.perf_counter() - started > 60 * FLAGS.budget_minutes:
            print(f"time budget of {FLAGS.budget_minutes:g} minutes spent", file=sys.stderr)
            break
        try:
            distances = score(betas, stage, reference, rate)
        except UserError:  # a beta beyond the trained noise levels
            print(f"[{number}] {','.join(f'{beta:g}' for beta in betas)}  skipped: beyond the "
                  "trained noise levels", file=sys.stderr)
            continue
        value = math.inf if distances is None else distances[FLAGS.metric]
        results.append({"betas": betas, FLAGS.metric: value})
        if best is None or value < best[FLAGS.metric]:
            best = results[-1]
        print(f"[{number}] {','.join(f'{beta:g}' for beta in betas)}  {FLAGS.metric} "
              f"{value:.4g}  best {best[FLAGS.metric]:.4g}  "
              f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    if best is None or not math.isfinite(best[FLAGS.metric]):
        raise UserError("no candidate schedule produced audio within the trained noise levels")
    path = samplers.schedule_path(FLAGS.model_dir, FLAGS.steps)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    record = {"steps": FLAGS.steps, "betas": best["betas"], "metric": FLAGS.metric,
              "score": best[FLAGS.metric], "candidates_scored": len(results),
              "reference": os.path.abspath(FLAGS.reference), "checkpoint": stage.checkpoint,
              "num_samples": FLAGS.num_samples, "seconds": FLAGS.seconds,
              "default_score": next((result[FLAGS.metric] for result in results
                                     if result["betas"] == list(samplers.FAST_SCHEDULE)), None)}
    write_json(path, record)
    print(json.dumps(record))


def main(argv):
    """The command with argv (`[program, flags...]`) in this process; returns its exit status."""
    return cli.main(search, FLAGS, argv, "interrupted; no schedule was written")


if __name__ == "__main__":
    cli.run(main)
