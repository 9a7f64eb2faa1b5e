"""Which CPU kernels TensorFlow runs, oneDNN's or its stock ones, chosen per CPU and per job.

TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it loads, so the commands call `choose`
before they import it. Neither kind wins everywhere: on an AVX2-only EPYC oneDNN trains 1.2x
faster and generates 1.5x slower than the stock kernels (bench/README.md). `choose` therefore
times both on a slice of the `base` network the first time a job runs on a CPU, each in a
fresh process, and remembers the winner in the cache folder (kernels.json, keyed by CPU,
TensorFlow version, job and precision). `--kernels=onednn|stock` or TF_ENABLE_ONEDNN_OPTS
overrides the measurement.

This module must not import TensorFlow: the probe (`python -m network.kernels JOB PRECISION`)
imports it in its own process.
"""

import functools
import json
import os
import statistics
import subprocess
import sys
import time

from params import default_cache_dir, left_by_ended_process

KERNELS = ("auto", "onednn", "stock")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
CPU_PRECISIONS = ("float32", "mixed_bfloat16")
JOBS = ("train", "generate")
PROBE_TIMEOUT_S = 600
# The CPU features that decide which kernels TensorFlow runs and how fast.
SPEED_FLAGS = {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
               "amx_bf16"}
# Within this ratio the stock kernels do not win: a noisy measurement keeps oneDNN.
TIE = 1.03


def _argv_value(argv, name, default):
    """The value of --name=value or --name value in argv (the last one wins), else default."""
    value = default
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
        elif arg == f"--{name}" and i + 1 < len(argv):
            value = argv[i + 1]
    return value


@functools.cache
def cpu_info():
    """{"model": the CPU's model name, "generation": its family and model numbers (a
    virtual machine's model name can be as vague as "AMD EPYC"), "flags": its feature flags
    (a set)}, from /proc/cpuinfo (unknown where there is none)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
                if key.strip() == "flags":
                    break
    except OSError:
        pass
    return {"model": fields.get("model name", "unknown CPU"),
            "generation": f"family {fields.get('cpu family', '?')} model "
                          f"{fields.get('model', '?')}",
            "flags": set(fields.get("flags", "").split())}


def _tensorflow_version():
    from importlib import metadata
    try:
        return metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        return "unknown"


def cache_key(job, precision):
    cpu = cpu_info()
    speed_flags = " ".join(sorted(cpu["flags"] & SPEED_FLAGS))
    return " | ".join([cpu["model"], cpu["generation"], speed_flags, _tensorflow_version(), job,
                       precision])


def measure(job, precision):
    """{"onednn": s, "stock": s}: seconds of one probe step of `job` with each kind of kernel,
    each timed in its own process (TensorFlow fixes its kernels when it loads)."""
    seconds = {}
    for kind, setting in (("onednn", "1"), ("stock", "0")):
        env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=setting, TF_CPP_MIN_LOG_LEVEL="3")
        try:
            done = subprocess.run([sys.executable, "-m", "network.kernels", job, precision],
                                  cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  env=env, capture_output=True, text=True,
                                  timeout=PROBE_TIMEOUT_S)
            seconds[kind] = float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
        except (subprocess.SubprocessError, OSError, ValueError, IndexError, KeyError):
            seconds[kind] = float("inf")  # a kind that cannot run the job loses
    return seconds


def _read(path):
    try:
        with open(path) as file:
            return json.load(file)
    except (OSError, ValueError):
        return {}


def _write(path, table):
    """Writes the table atomically; a read-only cache folder only costs a new measurement."""
    temporary = f"{path}.partial-{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        for name in os.listdir(os.path.dirname(path)):
            stale = os.path.join(os.path.dirname(path), name)
            if name.startswith("kernels.json.partial-") and left_by_ended_process(stale):
                os.remove(stale)
        with open(temporary, "w") as file:
            json.dump(table, file, indent=1)
        os.replace(temporary, path)
    except OSError:
        if os.path.exists(temporary):
            os.remove(temporary)


def choose(job, argv=None, cache_dir=None):
    """Sets TF_ENABLE_ONEDNN_OPTS for `job` ("train" or "generate"); call before TensorFlow
    loads. Reads --kernels and --precision from argv (default sys.argv).

    Returns (kernels, line): "onednn" or "stock", and one line saying which and why, for the
    command to print once its input has been checked.
    """
    argv = sys.argv[1:] if argv is None else argv
    flag = _argv_value(argv, "kernels", "auto")
    if flag in ("onednn", "stock"):
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if flag == "onednn" else "0"
        return flag, f"kernels: {flag} (chosen with --kernels)"
    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if setting is not None:
        kernels = "stock" if setting.strip().lower() in ("0", "false") else "onednn"
        return kernels, (f"kernels: {kernels} (TF_ENABLE_ONEDNN_OPTS={setting}; --kernels "
                         "overrides)")
    precision = _argv_value(argv, "precision", "float32")
    if (flag != "auto" or precision not in CPU_PRECISIONS
            or any(arg.startswith(("--help", "-h", "-?")) for arg in argv)):
        # absl refuses a bad value or prints help; float16 is for GPUs: nothing to measure.
        return "default", ""
    path = os.path.join(cache_dir or default_cache_dir(), "kernels.json")
    key = cache_key(job, precision)
    seconds = _read(path).get(key)
    when = "remembered in"
    if seconds is None:
        # Silent: a mistake in the command line must still give one line.
        seconds, when = measure(job, precision), "just now; remembered in"
        if min(seconds.values()) == float("inf"):  # not remembered: try again next time
            return "default", (f"kernels: TensorFlow's default (neither kind ran the {job} "
                               f"probe; `python -m network.kernels {job} {precision}` shows "
                               "why)")
        _write(path, {**_read(path), key: seconds})
    onednn, stock = seconds["onednn"], seconds["stock"]
    kernels = "stock" if stock * TIE < onednn else "onednn"
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if kernels == "onednn" else "0"
    return kernels, (f"kernels: {kernels} (measured for {job} on this CPU: oneDNN "
                     f"{onednn * 1000:.0f} ms, stock {stock * 1000:.0f} ms a probe step, "
                     f"{when} {path}; --kernels overrides)")


def probe(job, precision, repeats=5):
    """Median seconds of one step of `job` on a slice of `base`: one dilation cycle of its
    layers (every per-layer shape of the full network), generation on 1 x 7350 samples (one
    second), training (forward, backward) on 2 x 8000, in this process's kernels."""
    import keras
    import tensorflow as tf

    import params as params_lib
    from network.diffwave import DiffWave

    keras.mixed_precision.set_dtype_policy(precision)
    params = params_lib.preset("base", residual_layers=params_lib.BASE.dilation_cycle)
    model = DiffWave(params, dilated_conv="auto" if job == "train" else "direct").build_for()
    model.output_projection.kernel.assign(tf.random.normal([1, params.residual_channels, 1]))
    shape = [2, 8000, 1] if job == "train" else [1, 7350, 1]
    audio, steps = tf.random.normal(shape, seed=1), tf.fill([shape[0]], 10.0)

    @tf.function
    def step(audio, steps):
        inputs = {"audio": audio, "steps": steps}
        if job == "generate":
            return tf.reduce_sum(model(inputs))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(inputs, training=True)))
        gradients = tape.gradient(loss, model.trainable_variables)
        return tf.add_n([tf.reduce_sum(g) for g in gradients if g is not None])

    step(audio, steps).numpy()  # traces; oneDNN picks its kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(audio, steps).numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    print(json.dumps({"seconds": probe(sys.argv[1], sys.argv[2])}))
