"""Which CPU kernels TensorFlow runs, oneDNN's or its stock ones, chosen per CPU and per job.

TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it loads, so the commands call `choose`
before they import it. Neither kind wins everywhere: on an AVX2-only EPYC oneDNN trains 1.2x
faster and generates 1.5x slower than the stock kernels (bench/README.md). `choose` therefore
times both on a slice of the `base` network the first time a job runs on a CPU, each in a
fresh process, and remembers the winner in the cache folder (kernels.json, keyed by CPU,
TensorFlow version, probe version, job and precision). `--kernels=onednn|stock` or
TF_ENABLE_ONEDNN_OPTS overrides the measurement.

One probe of each kind decides nothing on a busy machine (measured: with one spinning process
per core beside it, a first run chose the kind that was 25 % slower alone). So the probes of the
two kinds are interleaved, round after round, until one kind is clearly faster or ROUNDS are
spent; each probe also measures how much of the machine other processes took meanwhile. An
entry measured under load, or too close to call, is marked unsure and measured again on the
next runs that start on a quiet machine (one under load until a quiet measurement replaces
it, a close call at most MEASUREMENTS times in all; a run that starts under load keeps what it
has instead of measuring the same load again), and a close call goes to the kind whose slowest
step was faster (the better worst case). Every entry is judged again by `decide` when read, so
a change of the rule reaches entries already written.

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

from util import default_cache_dir, left_by_ended_process

KERNELS = ("auto", "onednn", "stock")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
CPU_PRECISIONS = ("float32", "mixed_bfloat16")
JOBS = ("train", "generate")
PROBE_TIMEOUT_S = 600
# The CPU features that decide which kernels TensorFlow runs and how fast.
SPEED_FLAGS = {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
               "amx_bf16"}
PROBE_VERSION = 2  # part of every cache key: what another probe measured is not reused
ROUNDS = 3  # interleaved rounds (a process of each kind) at most per measurement
# A kind wins clearly when its median step is this much faster and three quarters of its steps
# are faster than the other kind's median.
CLEAR = 1.05
BUSY_SHARE = 0.25  # other processes took more of the machine than this: measured under load
MEASUREMENTS = 3  # an unsure entry is measured again on later runs until it has this many


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
    return " | ".join([cpu["model"], cpu["generation"], speed_flags, _tensorflow_version(),
                       f"probe {PROBE_VERSION}", job, precision])


def _probe_process(kind, job, precision):
    """The probe in a fresh process with `kind`'s kernels: {"times": [s], "others": share of
    the machine other processes took}, or None when it cannot run the job."""
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1" if kind == "onednn" else "0",
               TF_CPP_MIN_LOG_LEVEL="3")
    try:
        done = subprocess.run([sys.executable, "-m", "network.kernels", job, precision],
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        return {"times": [float(value) for value in result["times"]],
                "others": float(result["others"])}
    except (subprocess.SubprocessError, OSError, ValueError, IndexError, KeyError, TypeError):
        return None


def decide(times):
    """(kind, clear) from {"onednn": [s], "stock": [s]}: the kind whose median step is CLEAR
    times faster and whose upper quartile beats the other's median, clear (one slow step of
    many does not undo it); else the kind with the faster slowest step (oneDNN when equal),
    not clear."""
    if not times["stock"] or min(times["stock"]) == float("inf"):
        return "onednn", bool(times["onednn"]) and min(times["onednn"]) < float("inf")
    if not times["onednn"] or min(times["onednn"]) == float("inf"):
        return "stock", True
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    for kind, other in (("onednn", "stock"), ("stock", "onednn")):
        upper_quartile = (statistics.quantiles(times[kind], n=4)[2] if len(times[kind]) > 1
                          else times[kind][0])
        if medians[kind] * CLEAR < medians[other] and upper_quartile < medians[other]:
            return kind, True
    return ("stock" if max(times["stock"]) < max(times["onednn"]) else "onednn"), False


def measure(job, precision, rounds=ROUNDS):
    """{"onednn": [s], "stock": [s], "busy": bool}: step times of `job` with each kind of
    kernel, the kinds' probes interleaved (each in its own process: TensorFlow fixes its kernels
    when it loads) for up to `rounds` rounds, fewer once `decide` calls it clearly; busy when
    other processes took more than BUSY_SHARE of the machine during a probe. A kind that cannot
    run the job gets [inf]."""
    times, busy = {"onednn": [], "stock": []}, False
    for number in range(rounds):
        for kind in times:
            result = _probe_process(kind, job, precision)
            times[kind] += result["times"] if result else [float("inf")]
            busy = busy or bool(result and result["others"] > BUSY_SHARE)
        if number >= 1 and decide(times)[1] and not busy:
            break
    return {**times, "busy": busy}


def merge(entry, measured):
    """An entry of kernels.json after a new measurement: a quiet measurement replaces one taken
    under load, alike ones pool their times. {"onednn", "stock", "busy", "measurements",
    "choice", "sure"}."""
    if entry is None or (entry["busy"] and not measured["busy"]):
        times, busy = {kind: measured[kind] for kind in ("onednn", "stock")}, measured["busy"]
    elif measured["busy"] and not entry["busy"]:
        times, busy = {kind: entry[kind] for kind in ("onednn", "stock")}, False
    else:
        times = {kind: entry[kind] + measured[kind] for kind in ("onednn", "stock")}
        busy = measured["busy"]
    return judged({**times, "busy": busy,
                   "measurements": (entry["measurements"] if entry else 0) + 1})


def judged(entry):
    """The entry with "choice" and "sure" decided from its times by today's `decide`, so an
    entry written under an older rule (same probe, same times) is read by the current one."""
    choice, clear = decide({kind: entry[kind] for kind in ("onednn", "stock")})
    return {**entry, "choice": choice, "sure": clear and not entry["busy"]}


def measured_again(entry):
    """Whether the next run that starts on a quiet machine measures this entry again: one taken
    under load until a quiet measurement replaces it, a close call up to MEASUREMENTS times."""
    return not entry["sure"] and (entry["busy"] or entry["measurements"] < MEASUREMENTS)


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
    entry = _read(path).get(key)
    entry = judged(entry) if entry else None
    when = "remembered in"
    again = (entry is not None and measured_again(entry)
             and machine_busy_share() <= BUSY_SHARE)
    if entry is None or again:
        # Silent: a mistake in the command line must still give one line.
        measured = measure(job, precision)
        if min(measured["onednn"] + measured["stock"]) == float("inf"):  # try again next time
            return "default", (f"kernels: TensorFlow's default (neither kind ran the {job} "
                               f"probe; `python -m network.kernels {job} {precision}` shows "
                               "why)")
        entry, when = merge(entry, measured), "just now; remembered in"
        _write(path, {**_read(path), key: entry})
    kernels = entry["choice"]
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if kernels == "onednn" else "0"
    onednn, stock = (statistics.median(entry[kind]) for kind in ("onednn", "stock"))
    doubt = ""
    if not entry["sure"]:
        doubt = (", under load" if entry["busy"] else ", too close to call") + (
            "; measured again on a quieter run" if measured_again(entry)
            else f"; the better worst case after {entry['measurements']} measurements")
    return kernels, (f"kernels: {kernels} (measured for {job} on this CPU: oneDNN "
                     f"{onednn * 1000:.0f} ms, stock {stock * 1000:.0f} ms a probe step{doubt}, "
                     f"{when} {path}; --kernels overrides)")


def probe(job, precision, repeats=5):
    """(seconds of each of `repeats` steps of `job` on a slice of `base`, the share of the
    machine other processes took meanwhile): one dilation cycle of its layers (every per-layer
    shape of the full network), generation on 1 x 7350 samples (one second), training
    (forward, backward) on 2 x 8000, in this process's kernels."""
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
    times, before, started = [], _machine_busy_seconds(), time.perf_counter()
    own = sum(os.times()[:2])
    for _ in range(repeats):
        start = time.perf_counter()
        step(audio, steps).numpy()
        times.append(time.perf_counter() - start)
    wall, after = time.perf_counter() - started, _machine_busy_seconds()
    others = 0.0
    if before is not None and after is not None:
        cores = len(os.sched_getaffinity(0))
        others = max(0.0, (after - before) - (sum(os.times()[:2]) - own)) / (wall * cores)
    return times, others


def machine_busy_share(seconds=0.5):
    """The share of the machine's cores that processes kept busy over the next `seconds`
    (this one sleeps meanwhile); 0 where /proc/stat cannot tell."""
    before = _machine_busy_seconds()
    time.sleep(seconds)
    after = _machine_busy_seconds()
    if before is None or after is None:
        return 0.0
    return (after - before) / (seconds * len(os.sched_getaffinity(0)))


def _machine_busy_seconds():
    """CPU seconds every process of the machine has run, from /proc/stat (None without it)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    step_times, others = probe(sys.argv[1], sys.argv[2])
    print(json.dumps({"times": step_times, "others": others}))
