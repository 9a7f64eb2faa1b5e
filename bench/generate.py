"""Generation speed and memory of the `base` network at the model rate; prints one JSON line.

  python bench/generate.py [--seconds=5] [--long_seconds=600] [--measure=fast6,ddim50,ddpm,rss]

rtf_* are wall seconds per second of audio (lower is faster) for one clip of --seconds,
timed after a warm-up run, through the same windowed evaluation generate.py uses. The weights
are untrained: the time does not depend on their values. peak_rss_mb_600s is the peak resident
memory of a separate `python generate.py --seconds=600 --sampler=fast` process on a model dir
holding such a network. Targets on the 2-core CPU: rtf_fast6 <= 0.5, peak_rss_mb_600s <= 2048.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

import data  # noqa: E402,F401  quiets TensorFlow's start-up logging
import tensorflow as tf  # noqa: E402

import params as params_lib  # noqa: E402
from diffusion import Diffusion, samplers  # noqa: E402
from network import DiffWave  # noqa: E402

flags.DEFINE_string("preset", "base", "Params preset of the timed network.")
flags.DEFINE_float("seconds", 5.0, "Audio per timed run (>= 5 for the reported figures).")
flags.DEFINE_float("long_seconds", 600.0, "Clip length of the memory run.")
flags.DEFINE_integer("window", 65536, "generate.py's --window.")
flags.DEFINE_list("measure", ["fast6", "ddim50", "ddpm", "rss"], "What to measure.")
FLAGS = flags.FLAGS


def real_time_factor(plan, network, samples, rate):
    model = samplers.windowed_network(network, FLAGS.window)
    samplers.run(plan[:1], model, [1, samples, 1], samplers.example_noise(0, 0))
    start = time.perf_counter()
    samplers.run(plan, model, [1, samples, 1], samplers.example_noise(0, 0)).numpy()
    return (time.perf_counter() - start) / (samples / rate)


def peak_rss_mb(params, network, seconds):
    """Peak RSS (MB) and wall time of a generate.py process making one clip of `seconds`."""
    with tempfile.TemporaryDirectory() as model_dir:
        params.save(os.path.join(model_dir, "params.json"))
        tf.train.CheckpointManager(tf.train.Checkpoint(model=network, ema=network),
                                   os.path.join(model_dir, "checkpoints"), 1).save()
        start = time.perf_counter()
        subprocess.run([sys.executable, os.path.join(ROOT, "generate.py"),
                        f"--model_dir={model_dir}", f"--seconds={seconds}", "--sampler=fast",
                        f"--window={FLAGS.window}", f"--output_dir={model_dir}/out"],
                       check=True, capture_output=True)
        wall = time.perf_counter() - start
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, wall


def main(_):
    params = params_lib.preset(FLAGS.preset)
    network = DiffWave(params).build_for()
    diffusion = Diffusion.from_params(params)
    rate = params.sample_rate
    samples = round(FLAGS.seconds * rate)
    plans = {"fast6": lambda: samplers.fast_plan(diffusion),
             "ddim50": lambda: samplers.ddim_plan(diffusion, 50),
             "ddpm": lambda: samplers.ddpm_plan(diffusion)}
    result = {"preset": FLAGS.preset, "sample_rate": rate, "seconds": FLAGS.seconds,
              "window": FLAGS.window, "cores": len(os.sched_getaffinity(0))}
    for name, make_plan in plans.items():
        if name in FLAGS.measure:
            result[f"rtf_{name}"] = round(real_time_factor(make_plan(), network, samples, rate), 4)
    if "rss" in FLAGS.measure:
        rss, wall = peak_rss_mb(params, network, FLAGS.long_seconds)
        result["peak_rss_mb_600s" if FLAGS.long_seconds == 600 else "peak_rss_mb"] = round(rss)
        result["rtf_fast6_long"] = round(wall / FLAGS.long_seconds, 4)
    result["targets"] = {"rtf_fast6": 0.5, "peak_rss_mb_600s": 2048}
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
