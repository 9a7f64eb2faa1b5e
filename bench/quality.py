"""Sample quality per sampler: trains `tiny` on the built-in tones, searches a 6-step schedule,
generates with each sampler and scores it with evaluate.py's distances against held-out tones.

  python bench/quality.py [--steps=2000] [--clips=64] [--model_dir=DIR]

Prints one JSON line: per sampler (ddpm, ddim50, fast6 with DiffWave's schedule, fast6 with the
searched one) frechet_mel, frechet_mfcc, kid and kid_std, and each fast variant's frechet_mel
relative to ddpm's (target: within 10 %). The schedule is searched against one set of held-out
tones and scored against another, so it is not graded on what it was fitted to. A --model_dir
that already holds the trained steps is reused.
"""

import json
import os
import subprocess
import sys
import tempfile

from common import ROOT

from absl import app, flags  # noqa: E402

import evaluate  # noqa: E402
from data.audio_files import write_wav  # noqa: E402
from data.synthetic import harmonic_tone  # noqa: E402
from diffusion import generation, samplers  # noqa: E402
from network import checkpoints  # noqa: E402

flags.DEFINE_integer("steps", 2000, "Training steps of the tiny model.")
flags.DEFINE_integer("clips", 64, "Clips generated per sampler, and held-out tones per set.")
flags.DEFINE_string("model_dir", None, "Where to train (default: a temporary folder).")
flags.DEFINE_float("search_minutes", 5.0, "search_schedule.py's --budget_minutes.")
FLAGS = flags.FLAGS

HELD_OUT_SEEDS = {"search": 777, "score": 778}  # the training tones use params' seed 1234


def held_out_tones(folder, seed, count, params):
    """`count` built-in-style tones the model never saw, one WAV each at the model's rate."""
    rate = params.sample_rate
    for index in range(count):
        audio, _ = harmonic_tone(seed, index, rate, params.clip_samples, 0.9 * rate / 2)
        write_wav(os.path.join(folder, f"tone{index:03d}.wav"), audio, rate)


def rounded_distances(generated, reference):
    return {name: round(value, 4)
            for name, value in evaluate.distances(generated, reference).items()}


def run(script, *args):
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT,
                            capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{script} failed: {result.stderr.strip().splitlines()[-1]}")
    return result.stdout


def main(_):
    workspace = tempfile.mkdtemp(prefix="quality-")
    model_dir = FLAGS.model_dir or os.path.join(workspace, "model")
    run("train.py", "--preset=tiny", f"--max_steps={FLAGS.steps}", "--log_every=500",
        "--checkpoint_every=1000", f"--model_dir={model_dir}")
    params = checkpoints.load_params(model_dir)
    folders = {name: os.path.join(workspace, name) for name in HELD_OUT_SEEDS}
    for name, seed in HELD_OUT_SEEDS.items():
        held_out_tones(folders[name], seed, FLAGS.clips, params)
    searched = json.loads(run("search_schedule.py", f"--model_dir={model_dir}", "--steps=6",
                              f"--reference={folders['search']}", "--num_samples=16",
                              f"--seconds={params.clip_samples / params.sample_rate}",
                              f"--budget_minutes={FLAGS.search_minutes}").splitlines()[-1])
    stage = generation.Stage.load(model_dir)
    diffusion = stage.diffusion
    plans = {"ddpm": samplers.ddpm_plan(diffusion),
             "ddim50": samplers.ddim_plan(diffusion, min(50, diffusion.steps)),
             "fast6": samplers.fast_plan(diffusion),
             "fast6_searched": samplers.fast_plan(diffusion, searched["betas"])}
    reference = evaluate.folder_features(folders["score"], params.sample_rate)
    result = {"train_steps": FLAGS.steps, "clips": FLAGS.clips,
              "searched_betas": searched["betas"], "scores": {}}
    # The floor: other held-out tones, as close as a perfect model's samples would come.
    result["scores"]["held_out_tones"] = rounded_distances(
        evaluate.folder_features(folders["search"], params.sample_rate), reference)
    for name, plan in plans.items():
        audio = stage.generate(FLAGS.clips, params.clip_samples, seed=1,
                               plan=plan).numpy()[..., 0]
        result["scores"][name] = rounded_distances(
            evaluate.clips_features(audio, params.sample_rate), reference)
    ddpm = result["scores"]["ddpm"]["frechet_mel"]
    for name in ("fast6", "fast6_searched"):
        result[f"{name}_over_ddpm"] = round(result["scores"][name]["frechet_mel"] / ddpm, 3)
    result["target"] = "fast6 frechet_mel within 10 % of ddpm (ratio <= 1.1)"
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
