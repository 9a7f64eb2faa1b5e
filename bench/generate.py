"""Generation speed and memory of the `base` network at the model rate; prints one JSON line.

  python bench/generate.py [--seconds=5] [--long_seconds=600] [--precision=float32]
                           [--measure=forward,fast6,ddim50,ddpm,rss]

rtf_* are wall seconds per second of audio (lower is faster) for one clip of --seconds,
timed after a warm-up run, through the same windowed evaluation generate.py uses. The weights
are untrained: the time does not depend on their values. peak_rss_mb_600s is the peak resident
memory of a separate `python generate.py --seconds=600 --sampler=fast` process on a model dir
holding such a network. forward_ms is the median time of one network evaluation on
1 x --forward_samples samples (1 s at 7350 Hz), gflops its convolution FLOPs per second against
this machine's float32 matmul peak. Targets on the 2-core CPU: rtf_fast6 <= 0.5,
peak_rss_mb_600s <= 2048, forward_ms <= 115 (1.5x faster than a straightforward TF build).
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from network import kernels  # noqa: E402

KERNELS = kernels.choose("generate")  # generate.py's choice, before TensorFlow loads

from common import ROOT, machine, matmul_peak_gflops  # noqa: E402

from absl import app, flags  # noqa: E402
import tensorflow as tf  # noqa: E402

import cli  # noqa: E402
import params as params_lib  # noqa: E402
from diffusion import generation, samplers  # noqa: E402
from network import DiffWave  # noqa: E402

flags.DEFINE_string("preset", "base", "Params preset of the timed network.")
flags.DEFINE_float("seconds", 5.0, "Audio per timed run (>= 5 for the reported figures).")
flags.DEFINE_float("long_seconds", 600.0, "Clip length of the memory run.")
flags.DEFINE_integer("window", 65536, "generate.py's --window.")
flags.DEFINE_integer("forward_samples", 7350, "Samples of the one-evaluation timing.")
flags.DEFINE_list("measure", ["forward", "fast6", "ddim50", "ddpm", "rss"], "What to measure.")
FLAGS = flags.FLAGS
cli.define_runtime_flags(FLAGS, distribute=False)


def forward_ms(stage, samples, repeats=10):
    """Median milliseconds of one network evaluation on [1, samples, 1] after a warm-up."""
    model = stage.denoiser()
    audio, steps = tf.random.normal([1, samples, 1]), tf.constant([10.0])
    model(audio, steps).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(audio, steps).numpy()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def real_time_factor(stage, plan, samples):
    stage.generate(1, samples, plan=plan[:1])
    start = time.perf_counter()
    stage.generate(1, samples, plan=plan).numpy()
    return (time.perf_counter() - start) / (samples / stage.sample_rate)


def peak_rss_mb(params, network, seconds):
    """Peak RSS (MB) and wall time of a generate.py process making one clip of `seconds`."""
    with tempfile.TemporaryDirectory() as model_dir:
        params.save(os.path.join(model_dir, "params.json"))
        tf.train.CheckpointManager(tf.train.Checkpoint(model=network, ema=network),
                                   os.path.join(model_dir, "checkpoints"), 1).save()
        start = time.perf_counter()
        subprocess.run([sys.executable, os.path.join(ROOT, "generate.py"),
                        f"--model_dir={model_dir}", f"--seconds={seconds}", "--sampler=fast",
                        f"--precision={FLAGS.precision}",
                        f"--window={FLAGS.window}", f"--output_dir={model_dir}/out"],
                       check=True, capture_output=True)
        wall = time.perf_counter() - start
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, wall


def main(_):
    cli.configure_runtime(FLAGS)
    params = params_lib.preset(FLAGS.preset)
    dilated_conv, said = cli.dilated_conv(FLAGS, training=False)
    print(KERNELS[1], said, sep="\n", file=sys.stderr)
    network = DiffWave(params, dilated_conv).build_for()
    stage = generation.Stage(params, network, window=FLAGS.window, jit=FLAGS.jit)
    diffusion = stage.diffusion
    rate = params.sample_rate
    samples = round(FLAGS.seconds * rate)
    plans = {"fast6": lambda: samplers.fast_plan(diffusion),
             "ddim50": lambda: samplers.ddim_plan(diffusion, 50),
             "ddpm": lambda: samplers.ddpm_plan(diffusion)}
    result = {"preset": FLAGS.preset, "sample_rate": rate, "seconds": FLAGS.seconds,
              "window": FLAGS.window, "cores": len(os.sched_getaffinity(0)),
              "precision": FLAGS.precision, "jit": FLAGS.jit,
              "device": "GPU" if tf.config.list_logical_devices("GPU") else "CPU",
              "dilated_conv": dilated_conv, **machine()}
    if "forward" in FLAGS.measure:
        result["forward_ms"] = round(forward_ms(stage, FLAGS.forward_samples), 1)
        result["gflops"] = round(network.flops_per_sample() * FLAGS.forward_samples
                                 / result["forward_ms"] / 1e6, 1)
        result["matmul_peak_gflops"] = round(matmul_peak_gflops(), 1)
    for name, make_plan in plans.items():
        if name in FLAGS.measure:
            result[f"rtf_{name}"] = round(real_time_factor(stage, make_plan(), samples), 4)
    if "rss" in FLAGS.measure:
        rss, wall = peak_rss_mb(params, network, FLAGS.long_seconds)
        result["peak_rss_mb_600s" if FLAGS.long_seconds == 600 else "peak_rss_mb"] = round(rss)
        result["rtf_fast6_long"] = round(wall / FLAGS.long_seconds, 4)
    result["targets"] = {"rtf_fast6": 0.5, "peak_rss_mb_600s": 2048, "forward_ms": 115}
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
