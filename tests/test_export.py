"""export.py: a SavedModel that a TensorFlow program without this project's code can run."""

import os
import subprocess
import sys

import numpy as np

from conftest import command
from test_bad_input import assert_one_line_refusal
from test_generate import generate, read_all, written

# Only TensorFlow and numpy: run from a folder outside the repository.
LOAD_AND_RUN = """
import sys
import numpy as np
import tensorflow as tf
exported = tf.saved_model.load(sys.argv[1])
seed = tf.constant(int(sys.argv[2]), tf.int64)
samples = tf.constant(int(sys.argv[3]), tf.int32)
if len(sys.argv) > 5:  # a labelled model: LABEL GUIDANCE
    print(",".join(name.decode() for name in exported.label_names().numpy()))
    audio = exported.generate(seed=seed, samples=samples, label=tf.constant(sys.argv[5]),
                              guidance=tf.constant(float(sys.argv[6])))
    eps = exported.denoise(x_t=tf.zeros([2, 100, 1]), step=tf.constant([0.0, 10.5]),
                           label=tf.constant([0, 2]))
else:
    audio = exported.generate(seed=seed, samples=samples)
    eps = exported.denoise(x_t=tf.zeros([2, 100, 1]), step=tf.constant([0.0, 10.5]))
np.save(sys.argv[4], audio.numpy())
print(eps.shape)
"""


def export_and_run(model_dir, tmp_path, *label_and_guidance):
    """The model exported and run in a fresh process; returns (its stdout lines, the audio of
    generate(seed=3, samples=1500[, label, guidance]))."""
    exported = tmp_path / "exported" / "1"
    result = command("export.py", f"--model_dir={model_dir}", f"--output={exported}")
    assert result.returncode == 0, result.stderr
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_AND_RUN, str(exported), "3", "1500", tmp_path / "a.npy",
         *label_and_guidance], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip().splitlines()[-1] == "(2, 100, 1)"
    return result.stdout, loaded.stdout.strip().splitlines(), np.load(tmp_path / "a.npy")


def test_the_saved_model_generates_what_generate_py_writes(model_dir, tmp_path):
    said, _, served = export_and_run(model_dir, tmp_path)
    assert "ckpt-30" in said
    [(written_clip, _)] = read_all(written(generate(model_dir, tmp_path / "out", "--seed=3",
                                                    "--samples=1500")))
    assert served.shape == (1500,) and np.abs(served).max() > 0
    np.testing.assert_allclose(served, written_clip, atol=2 / 32768)  # 16-bit rounding


def test_a_labelled_saved_model_takes_the_label_and_guidance(labelled_model_dir, tmp_path):
    said, lines, served = export_and_run(labelled_model_dir, tmp_path, "low", "2.5")
    assert "labels high, low" in said and lines[0] == "high,low"
    [(written_clip, _)] = read_all(written(generate(
        labelled_model_dir, tmp_path / "out", "--seed=3", "--samples=1500", "--label=low",
        "--guidance=2.5")))
    np.testing.assert_allclose(served, written_clip, atol=2 / 32768)


def test_export_refuses_an_existing_output(model_dir, tmp_path):
    result = command("export.py", f"--model_dir={model_dir}", f"--output={tmp_path}")
    assert_one_line_refusal(result, "exists; give a new folder")
    assert os.listdir(tmp_path) == []


def test_a_cascade_exports_one_generate_that_runs_every_stage(cascade_dir, tmp_path):
    exported = tmp_path / "exported" / "1"
    result = command("export.py", f"--model_dir={cascade_dir}", f"--output={exported}")
    assert result.returncode == 0, result.stderr
    assert "signatures: generate)" in result.stdout
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, numpy as np, tensorflow as tf\n"
         "exported = tf.saved_model.load(sys.argv[1])\n"
         "audio = exported.generate(seed=tf.constant(3, tf.int64), samples=tf.constant(1500))\n"
         "np.save(sys.argv[2], audio.numpy())", str(exported), tmp_path / "a.npy"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    [(written_clip, rate)] = read_all(written(generate(cascade_dir, tmp_path / "out", "--seed=3",
                                                       "--samples=1500")))
    served = np.load(tmp_path / "a.npy")
    assert rate == 7350 and served.shape == (1500,) and np.abs(served).max() > 0
    np.testing.assert_allclose(served, written_clip, atol=2 / 32768)
