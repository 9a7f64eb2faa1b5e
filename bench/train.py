"""Training speed of the `base` network on batch 4 x 16000 samples; prints one JSON line.

  python bench/train.py [--precision=mixed_bfloat16] [--intra_op_threads=0] [--strategy=default]

Times Trainer.train_step (forward, backward, global-norm clipping, Adam, EMA: exactly what
train.py runs) on a fixed random batch after --warmup steps. gflops counts 3x the forward
convolution FLOPs per step (the backward pass costs about twice the forward). Defaults are the
fastest settings measured: mixed_bfloat16 where the CPU has bfloat16 hardware, else float32;
TensorFlow's own threads. Target: steps_per_s >= 0.30 (1.5x a straightforward TF build's 0.20).
"""

import json
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from network import kernels  # noqa: E402

KERNELS = kernels.choose("train")  # train.py's choice, before TensorFlow loads

from common import machine, matmul_peak_gflops  # noqa: E402

import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

import cli  # noqa: E402
import params as params_lib  # noqa: E402
from network import runtime  # noqa: E402

import train  # noqa: E402
from diffusion import training  # noqa: E402

FLAGS = train.FLAGS  # train.py's flags select what is timed
# The fastest precision here: bfloat16 only where the CPU has it in hardware.
FLAGS.set_default("precision", "mixed_bfloat16" if runtime.has_bfloat16_hardware() else "float32")
flags.DEFINE_integer("batch", 4, "Clips per step (the global batch).", flag_values=FLAGS)
flags.DEFINE_integer("samples", 16000, "Samples per clip.", flag_values=FLAGS)
flags.DEFINE_integer("warmup", 2, "Untimed steps first (tracing, oneDNN kernel choice).",
                     flag_values=FLAGS)
flags.DEFINE_integer("steps", 5, "Timed steps.", flag_values=FLAGS)


def bench():
    cli.configure_runtime(FLAGS)
    strategy = runtime.make_strategy(FLAGS.strategy)
    params = params_lib.preset(FLAGS.preset, batch_size=FLAGS.batch,
                               clip_samples=FLAGS.samples)
    with tempfile.TemporaryDirectory() as model_dir:
        dilated_conv, said = cli.dilated_conv(FLAGS, training=True)
        print(KERNELS[1], said, sep="\n", file=sys.stderr)
        trainer = training.Trainer(params, None, model_dir, strategy, FLAGS.jit,
                                   dilated_conv, FLAGS.recompute)
        clean = 0.1 * tf.random.normal([FLAGS.batch, FLAGS.samples, 1], seed=1)
        batches = tf.data.Dataset.from_tensors({"audio": clean}).repeat()
        batches = iter(strategy.experimental_distribute_dataset(
            training.with_training_noise(batches, trainer.diffusion, 0, 0)))
        for _ in range(FLAGS.warmup):
            float(trainer.train_step(next(batches))[0])
        start = time.perf_counter()
        for _ in range(FLAGS.steps):
            float(trainer.train_step(next(batches))[0])
        steps_per_s = FLAGS.steps / (time.perf_counter() - start)
        flops_per_step = 3 * trainer.model.flops_per_sample() * FLAGS.batch * FLAGS.samples
    peak = matmul_peak_gflops()
    gflops = steps_per_s * flops_per_step / 1e9
    print(json.dumps({
        "steps_per_s": round(steps_per_s, 3),
        "audio_seconds_per_s": round(steps_per_s * FLAGS.batch * FLAGS.samples
                                     / params.sample_rate, 2),
        "gflops": round(gflops, 1),
        "matmul_peak_gflops": round(peak, 1),
        "share_of_peak": round(gflops / peak, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "precision": FLAGS.precision,
        "threads": {"intra_op": FLAGS.intra_op_threads, "inter_op": FLAGS.inter_op_threads,
                    "cores": len(os.sched_getaffinity(0))},
        "strategy": FLAGS.strategy, "replicas": strategy.num_replicas_in_sync,
        "jit": FLAGS.jit, "dilated_conv": dilated_conv, "recompute": FLAGS.recompute,
        **machine(), "preset": FLAGS.preset,
        "batch": [FLAGS.batch, FLAGS.samples],
        "device": "GPU" if tf.config.list_logical_devices("GPU") else "CPU",
        "targets": {"steps_per_s": 0.30}}))


if __name__ == "__main__":
    cli.run(lambda argv: cli.main(bench, FLAGS, argv, "interrupted"))
