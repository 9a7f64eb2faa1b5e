import json
import os
import subprocess
import sys
from unittest.mock import ANY

import numpy as np
import pytest

from network import kernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What one process computes with the kernels `kernels.choose` sets for a job: a tiny network's
# output and every gradient of a loss, with the dilated convolutions `auto` picks there.
NUMBERS = """
import json, sys
from network import kernels
job, flag, out = sys.argv[1:]
chosen, _ = kernels.choose(job, [f"--kernels={flag}"])
import numpy as np, tensorflow as tf
import params
from network.conv_kernels import resolve_dilated_conv
from network.diffwave import DiffWave
from tensorflow.python.util import _pywrap_util_port
dilated_conv, _ = resolve_dilated_conv("auto", training=job == "train")
model = DiffWave(params.preset("tiny"), dilated_conv).build_for()
rng = np.random.default_rng(0)
for weight in model.weights:
    weight.assign(rng.normal(size=weight.shape).astype("float32") * 0.3)
audio = tf.constant(rng.normal(size=[2, 300, 1]).astype("float32"))
steps = tf.constant([3.5, 40.0])
with tf.GradientTape() as tape:
    predicted = model({"audio": audio, "steps": steps}, training=job == "train")
    loss = tf.reduce_sum(predicted * tf.sin(tf.range(300.0))[:, None])
gradients = tape.gradient(loss, model.trainable_variables) if job == "train" else []
np.savez(out, output=predicted.numpy(),
         **{f"g{i}": g.numpy() for i, g in enumerate(gradients) if g is not None})
print(json.dumps({"chosen": chosen, "dilated_conv": dilated_conv,
                  "onednn": bool(_pywrap_util_port.IsMklEnabled())}))
"""


def numbers(job, flag, path):
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    done = subprocess.run([sys.executable, "-c", NUMBERS, job, flag, str(path)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), dict(np.load(path))


@pytest.mark.parametrize("job", kernels.JOBS)
def test_the_automatic_kernel_choice_computes_what_each_kind_computes(job, tmp_path):
    """oneDNN, the stock kernels (for training: with the folded convolutions they need) and the
    measured choice give one network the same output and gradients, to 1e-5 of their size."""
    runs = {flag: numbers(job, flag, tmp_path / f"{flag}.npz") for flag in kernels.KERNELS}
    assert runs["onednn"][0]["onednn"] and not runs["stock"][0]["onednn"]
    assert runs["auto"][0]["chosen"] in ("onednn", "stock")
    assert runs["auto"][0]["onednn"] == (runs["auto"][0]["chosen"] == "onednn")
    if job == "train":
        assert runs["stock"][0]["dilated_conv"] == "folded"
        assert runs["onednn"][0]["dilated_conv"] == "direct"
    reference = runs["onednn"][1]
    assert np.abs(reference["output"]).max() > 0.1  # the weights make the output non-trivial
    assert len(reference) == (1 if job == "generate" else 1 + 68)  # all but one unused
    for flag in ("stock", "auto"):
        got = runs[flag][1]
        assert got.keys() == reference.keys()
        for name, expected in reference.items():
            scale = max(1.0, np.abs(expected).max())
            np.testing.assert_allclose(got[name] / scale, expected / scale, atol=1e-5,
                                       err_msg=f"{flag}: {name}")


@pytest.fixture
def choose(monkeypatch, tmp_path):
    """kernels.choose in a fresh process's environment (no TF_ENABLE_ONEDNN_OPTS unless
    `env` gives it), remembering in tmp_path; `choose.measured(seconds, busy)` replaces the
    measurement by a record of its calls that returns three steps of each kind at `seconds`
    ({kind: s}), `busy` or not. The machine is quiet when a run starts unless `choose.load`
    says otherwise."""
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "")  # restored afterwards, whatever it was
    calls = []
    load = [0.0]
    monkeypatch.setattr(kernels, "machine_busy_share", lambda: load[0])

    def run(job, argv, env=None):
        monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
        if env is not None:
            monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", env)
        return kernels.choose(job, argv, tmp_path)

    def measured(seconds, busy=False):
        monkeypatch.setattr(kernels, "measure", lambda job, precision: calls.append(
            (job, precision)) or {**{kind: [value] * 3 for kind, value in seconds.items()},
                                  "busy": busy})
        return calls
    run.measured = measured
    run.load = load
    return run


def test_the_faster_kind_is_chosen_once_and_remembered_per_job_and_precision(choose,
                                                                           tmp_path):
    calls = choose.measured({"onednn": 0.9, "stock": 0.6})
    assert choose("generate", []) == ("stock", ANY)
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
    kind, line = choose("generate", ["--seed=3"])
    assert kind == "stock" and calls == [("generate", "float32")]  # remembered
    assert "oneDNN 900 ms, stock 600 ms a probe step, remembered in" in line
    assert str(tmp_path) in line
    calls.clear()
    choose.measured({"onednn": 0.5, "stock": 0.6})
    assert choose("train", ["--precision", "mixed_bfloat16"])[0] == "onednn"
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert choose("generate", [])[0] == "stock"  # still remembered
    assert calls == [("train", "mixed_bfloat16")]
    table = json.loads((tmp_path / "kernels.json").read_text())
    assert len(table) == 2 and all(kernels.cpu_info()["model"] in key for key in table)


def test_a_close_call_takes_the_better_worst_case_and_a_failed_measurement_is_not_kept():
    assert kernels.decide({"onednn": [1.0, 1.01, 1.02], "stock": [0.6, 0.62, 0.61]}) == (
        "stock", True)
    # Stock's median is lower, but its slowest step is the slowest of all: not clear, oneDNN.
    assert kernels.decide({"onednn": [1.0, 1.01, 1.02], "stock": [0.8, 0.81, 1.3]}) == (
        "onednn", False)
    assert kernels.decide({"onednn": [1.02, 1.02], "stock": [1.0, 1.01]}) == ("stock", False)
    assert kernels.decide({"onednn": [float("inf")], "stock": [2.0]}) == ("stock", True)


def test_a_failed_measurement_is_not_remembered(choose):
    calls = choose.measured({"onednn": float("inf"), "stock": float("inf")})
    kind, line = choose("generate", [])
    assert kind == "default" and "neither kind ran" in line
    choose("generate", [])
    assert len(calls) == 2


def test_a_measurement_under_load_is_unsure_and_measured_again_until_a_quiet_one(choose,
                                                                              tmp_path):
    calls = choose.measured({"onednn": 0.9, "stock": 0.6}, busy=True)
    kind, line = choose("train", [])
    assert kind == "stock" and "under load; measured again on a quieter run" in line
    choose.load[0] = 0.9  # a run that starts under load keeps what it has
    assert choose("train", [])[0] == "stock" and len(calls) == 1
    choose.load[0] = 0.0
    calls = choose.measured({"onednn": 0.5, "stock": 0.6})  # quiet now: oneDNN is faster
    kind, line = choose("train", [])
    assert kind == "onednn" and "under load" not in line and len(calls) == 2
    [entry] = json.loads((tmp_path / "kernels.json").read_text()).values()
    assert entry["sure"] and entry["onednn"] == [0.5] * 3  # the busy times were dropped
    choose("train", [])
    assert len(calls) == 2  # sure: never measured again


def test_an_unsure_entry_is_settled_after_a_few_measurements(choose):
    calls = choose.measured({"onednn": 1.0, "stock": 1.01}, busy=False)  # a tie
    for _ in range(kernels.MEASUREMENTS + 2):
        kind, line = choose("generate", [])
    assert kind == "onednn" and len(calls) == kernels.MEASUREMENTS
    assert f"better worst case after {kernels.MEASUREMENTS} measurements" in line


def test_an_entry_under_load_is_measured_again_on_a_quiet_start_however_many_it_has(
        choose, tmp_path):
    """Three first runs under load (a busy machine for days) do not settle an entry: the first
    quiet start measures again."""
    calls = choose.measured({"onednn": 0.9, "stock": 0.6}, busy=True)
    choose("train", [])
    table = json.loads((tmp_path / "kernels.json").read_text())
    [key] = table
    table[key]["measurements"] = kernels.MEASUREMENTS
    (tmp_path / "kernels.json").write_text(json.dumps(table))
    choose.load[0] = 0.9  # still busy: kept
    assert choose("train", [])[0] == "stock" and len(calls) == 1
    choose.load[0] = 0.0
    calls = choose.measured({"onednn": 0.5, "stock": 0.6})
    kind, line = choose("train", [])
    assert kind == "onednn" and "under load" not in line and len(calls) == 2


def test_a_remembered_entry_is_judged_by_todays_rule(choose, tmp_path):
    """An entry written under an older rule (same probe version) whose times say oneDNN by a
    clear margin but whose stored choice says stock, unsure, is read as oneDNN, sure, and not
    measured again."""
    calls = choose.measured({"onednn": 0.9, "stock": 0.6})
    choose("generate", [])
    table = json.loads((tmp_path / "kernels.json").read_text())
    [key] = table
    table[key].update(onednn=[0.030, 0.032, 0.035, 0.036, 0.061],
                      stock=[0.042, 0.048, 0.049, 0.051, 0.054], choice="stock", sure=False,
                      measurements=kernels.MEASUREMENTS)
    (tmp_path / "kernels.json").write_text(json.dumps(table))
    kind, line = choose("generate", [])
    assert kind == "onednn" and "too close" not in line and len(calls) == 1


def test_an_entry_of_another_probe_version_cpu_or_tensorflow_is_ignored(choose, tmp_path,
                                                                       monkeypatch):
    calls = choose.measured({"onednn": 0.9, "stock": 0.6})
    choose("generate", [])
    for change in (lambda: monkeypatch.setattr(kernels, "PROBE_VERSION", 99),
                   lambda: monkeypatch.setattr(kernels, "_tensorflow_version", lambda: "9.9"),
                   lambda: monkeypatch.setattr(kernels, "cpu_info", lambda: {
                       "model": "Other CPU", "generation": "family 1 model 1",
                       "flags": {"avx2"}})):
        count = len(calls)
        change()
        choose("generate", [])
        assert len(calls) == count + 1  # measured anew: nothing of the others is reused
    assert len(json.loads((tmp_path / "kernels.json").read_text())) == 4


def test_a_probe_beside_one_spinning_process_per_core_knows_it_was_under_load():
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(len(os.sched_getaffinity(0)))]
    try:
        loaded = kernels._probe_process("stock", "generate", "float32")
        busy = kernels.machine_busy_share()
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    assert loaded["others"] > kernels.BUSY_SHARE and busy > 0.8
    assert len(loaded["times"]) == 5 and min(loaded["times"]) > 0


def test_the_flag_and_the_environment_override_the_measurement(choose, tmp_path):
    calls = choose.measured({"onednn": 0.9, "stock": 0.6})
    assert choose("generate", ["--kernels=onednn"])[0] == "onednn"
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    kind, line = choose("generate", [], env="1")
    assert kind == "onednn" and "TF_ENABLE_ONEDNN_OPTS=1" in line
    assert choose("train", [], env="0")[0] == "stock"
    assert choose("train", ["--kernels", "onednn"], env="0")[0] == "onednn"
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert choose("train", ["--helpfull"], env="0")[0] == "stock"
    assert choose("train", ["--help"])[0] == "default"
    assert choose("train", ["--kernels=fast"])[0] == "default"  # absl refuses it
    assert choose("train", ["--precision=float8"]) == ("default", "")  # absl refuses it too
    assert choose("train", ["--precision=mixed_float16"]) == ("default", "")  # GPUs only
    assert calls == [] and not (tmp_path / "kernels.json").exists()
