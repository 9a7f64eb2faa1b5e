"""A cascade's generation time per audio second, with each stage's share, and its peak memory;
prints one JSON line.

  python bench/cascade.py --model_dir=pretrained/soundtracks-cascade [--seconds=30]

Generates one clip of --seconds through the cascade's stages (each its own default plan,
`fast`), stage by stage, after a warm-up run of one second that traces every graph, as
generate.py does. `stages` gives each stage's rate, network calls and seconds; `s_per_audio_s`
the whole chain's, TensorFlow's start and the model loading excluded (`load_s` says what the
loading took). `peak_rss_mb` is this process's peak resident memory.
"""

import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from network import kernels  # noqa: E402

KERNELS = kernels.choose("generate")  # generate.py's choice, before TensorFlow loads

from common import machine  # noqa: E402

from absl import app, flags  # noqa: E402

import cli  # noqa: E402
from diffusion import generation  # noqa: E402

flags.DEFINE_string("model_dir", None, "A cascade's folder (its cascade.json).")
flags.DEFINE_float("seconds", 30.0, "Audio to generate at the top rate.")
FLAGS = flags.FLAGS
cli.define_runtime_flags(FLAGS, distribute=False)


def run_stages(cascade, samples):
    """Generates `samples` at the top rate stage by stage; returns [(seconds, audio)]."""
    timed, below = [], None
    for number, (stage, length) in enumerate(zip(cascade.stages, cascade.lengths(samples))):
        started = time.perf_counter()
        below = stage.generate(1, length, seed=0, below=below, stage=number)
        below.numpy()
        timed.append(time.perf_counter() - started)
    return timed


def main(_):
    cli.configure_runtime(FLAGS)
    started = time.perf_counter()
    cascade = generation.Cascade.load(FLAGS.model_dir)
    load_seconds = time.perf_counter() - started
    rate = cascade.sample_rate
    run_stages(cascade, rate)  # warm-up: one second traces every graph
    seconds = run_stages(cascade, round(FLAGS.seconds * rate))
    total = sum(seconds)
    result = {
        "model_dir": FLAGS.model_dir, "seconds": FLAGS.seconds, "rate": rate,
        "s_per_audio_s": round(total / FLAGS.seconds, 4), "total_s": round(total, 2),
        "load_s": round(load_seconds, 2),
        "stages": [{"rate": stage.sample_rate, "network_calls": len(stage.plan),
                    "seconds": round(part, 2), "share": round(part / total, 3)}
                   for stage, part in zip(cascade.stages, seconds)],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "kernels": KERNELS[0], "cores": len(os.sched_getaffinity(0)), **machine()}
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
