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
audio = exported.generate(seed=tf.constant(int(sys.argv[2]), tf.int64),
                          samples=tf.constant(int(sys.argv[3]), tf.int32))
eps = exported.denoise(x_t=tf.zeros([2, 100, 1]), step=tf.constant([0.0, 10.5]))
np.save(sys.argv[4], audio.numpy())
print(eps.shape)
"""


def test_the_saved_model_generates_what_generate_py_writes(model_dir, tmp_path):
    exported = tmp_path / "exported" / "1"
    result = command("export.py", f"--model_dir={model_dir}", f"--output={exported}")
    assert result.returncode == 0, result.stderr
    assert "ckpt-30" in result.stdout
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_AND_RUN, str(exported), "3", "1500", tmp_path / "a.npy"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip().splitlines()[-1] == "(2, 100, 1)"
    served = np.load(tmp_path / "a.npy")
    [(written_clip, _)] = read_all(written(generate(model_dir, tmp_path / "out", "--seed=3",
                                                    "--samples=1500")))
    assert served.shape == (1500,) and np.abs(served).max() > 0
    np.testing.assert_allclose(served, written_clip, atol=2 / 32768)  # 16-bit rounding


def test_export_refuses_an_existing_output(model_dir, tmp_path):
    result = command("export.py", f"--model_dir={model_dir}", f"--output={tmp_path}")
    assert_one_line_refusal(result, "exists; give a new folder")
    assert os.listdir(tmp_path) == []
