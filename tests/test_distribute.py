"""train.py under tf.distribute on CPU: two logical devices train like one, two workers on
loopback write one checkpoint, mixed precision trains and resumes under float32."""

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import params as params_lib
from conftest import ROOT, TINY, command, copy_model, run
from network import DiffWave
from test_bad_input import assert_one_line_refusal

# train.py on N logical CPU devices: they can only be made before TensorFlow starts.
ON_LOGICAL_CPUS = """
import sys
sys.path.insert(0, {root!r})
import cli
cli.quiet_tensorflow()
import tensorflow as tf
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * int(sys.argv[1]))
import train
sys.exit(train.main(["train.py"] + sys.argv[2:]))
"""


def tiny_flags(workspace, model_dir, *flags):
    return [*TINY, f"--model_dir={model_dir}",
            f"--cache_dir={workspace / 'cache'}", "--log_every=1", *flags]


def on_logical_cpus(workspace, devices, *flags):
    script = workspace / "on_logical_cpus.py"
    script.write_text(ON_LOGICAL_CPUS.format(root=ROOT))
    return run(str(script), str(devices), *flags)


def losses(stdout):
    return [float(loss) for loss in re.findall(r"loss (\S+)", stdout)]


def weights(model_dir, step):
    """{name: value} of every model and EMA weight in the checkpoint of `step`."""
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints", f"ckpt-{step}"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith(("model/", "ema/")) and "OPTIMIZER_SLOT" not in name}


def network_weight_count(model_dir):
    """How many weights one network of `model_dir`'s params.json has: `weights` returns more
    when it holds those of the model and of the EMA copy."""
    params = params_lib.Params.load(os.path.join(model_dir, "params.json"))
    return len(DiffWave(params).build_for().weights)


def test_two_logical_cpus_train_like_one_device(workspace, labelled_model_dir):
    """On labelled tones (--labels=folders): each replica gets its half of the labels and of
    the label dropout."""
    flags = ["--max_steps=6", "--checkpoint_every=6", "--learning_rate=0.01",
             f"--data_dir={labelled_model_dir.parent / 'data'}", "--labels=folders"]
    one = command("train.py", "--strategy=default",
                  *tiny_flags(workspace, workspace / "one", *flags))
    two = on_logical_cpus(workspace, 2, "--strategy=mirrored",
                          *tiny_flags(workspace, workspace / "two", *flags))
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert len(losses(one.stdout)) == 6
    np.testing.assert_allclose(losses(two.stdout), losses(one.stdout), atol=2e-4)
    # A large learning rate makes the weights move: a replica that applied only its own half
    # of the batch, or counted it twice, would end elsewhere.
    single, mirrored = weights(workspace / "one", 6), weights(workspace / "two", 6)
    assert single.keys() == mirrored.keys()
    assert len(single) > network_weight_count(workspace / "one")
    moved = max(np.abs(single[name]).max() for name in single if "output_projection" in name)
    assert moved > 1e-3
    assert any("label_embedding" in name for name in single)
    for name in single:
        np.testing.assert_allclose(mirrored[name], single[name], atol=2e-5, rtol=1e-3,
                                   err_msg=name)


def test_two_logical_cpus_train_an_upsampler_like_one_device(workspace):
    """The condition and its augmentation noise are drawn before the batch is split."""
    flags = ["--max_steps=4", "--checkpoint_every=4", "--learning_rate=0.01",
             "--upsample_from=2450", "--condition_noise_max=0.2"]
    one = command("train.py", *tiny_flags(workspace, workspace / "up_one", *flags))
    two = on_logical_cpus(workspace, 2, "--strategy=mirrored",
                          *tiny_flags(workspace, workspace / "up_two", *flags))
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    np.testing.assert_allclose(losses(two.stdout), losses(one.stdout), atol=2e-4)
    single, mirrored = weights(workspace / "up_one", 4), weights(workspace / "up_two", 4)
    for name in single:
        np.testing.assert_allclose(mirrored[name], single[name], atol=2e-5, rtol=1e-3,
                                   err_msg=name)


def test_xla_training_takes_the_same_steps(workspace):
    flags = ["--max_steps=4", "--checkpoint_every=4"]
    plain = command("train.py", *tiny_flags(workspace, workspace / "plain", *flags))
    compiled = command("train.py", "--jit", *tiny_flags(workspace, workspace / "jit", *flags))
    assert plain.returncode == 0 and compiled.returncode == 0, compiled.stderr
    assert len(losses(compiled.stdout)) == 4
    np.testing.assert_allclose(losses(compiled.stdout), losses(plain.stdout), atol=2e-4)


def test_global_batch_not_divisible_by_replicas_is_refused(workspace):
    result = on_logical_cpus(workspace, 2, "--strategy=mirrored",
                             *tiny_flags(workspace, workspace / "odd", "--batch_size=3"))
    assert_one_line_refusal(result, "--batch_size=3 is not divisible by the 2 replicas")
    assert not (workspace / "odd").exists()


def test_multiworker_without_tf_config_is_refused(workspace, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    result = command("train.py", "--strategy=multiworker",
                     *tiny_flags(workspace, workspace / "alone"))
    assert_one_line_refusal(result, "needs the TF_CONFIG environment variable")


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def run_cluster(workspace, model_dirs, *flags):
    """train.py as two workers on loopback, worker i with --model_dir=model_dirs[i]; returns
    [(returncode, stdout, stderr)] per worker."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index, model_dir in enumerate(model_dirs):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            [sys.executable, "train.py", "--strategy=multiworker",
             *tiny_flags(workspace, model_dir, *flags)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "TF_CONFIG": json.dumps(config)}))
    return [(process.returncode, *outputs) for process, outputs in
            zip(processes, [process.communicate(timeout=300) for process in processes])]


def test_two_workers_on_loopback_train_resume_and_only_the_chief_writes(workspace):
    model_dir = workspace / "cluster"
    first = run_cluster(workspace, [model_dir] * 2, "--max_steps=4", "--checkpoint_every=4")
    for returncode, stdout, stderr in first:
        assert returncode == 0, stderr
        assert len(losses(stdout)) == 4
    assert losses(first[0][1]) == losses(first[1][1])  # one global batch, one loss
    assert sorted(os.listdir(model_dir / "checkpoints")) == [
        "checkpoint", "ckpt-4.data-00000-of-00001", "ckpt-4.index"]
    assert len([name for name in os.listdir(model_dir) if name.startswith("events")]) == 1
    saved = weights(model_dir, 4)
    assert len(saved) > network_weight_count(model_dir)
    assert all(np.isfinite(value).all() for value in saved.values())

    resumed = run_cluster(workspace, [model_dir] * 2, "--max_steps=6", "--checkpoint_every=2")
    for returncode, stdout, stderr in resumed:
        assert returncode == 0, stderr
        assert "resuming from step 4" in stdout and len(losses(stdout)) == 2
    assert "ckpt-6.index" in os.listdir(model_dir / "checkpoints")


def test_workers_that_find_different_checkpoints_refuse_to_train(workspace, model_dir,
                                                                 tmp_path):
    """Worker 1 sees an empty --model_dir (storage not shared), worker 0 a checkpoint."""
    trained, empty = copy_model(model_dir, tmp_path), workspace / "empty"
    for returncode, _, stderr in run_cluster(workspace, [trained, empty], "--max_steps=40"):
        assert returncode == 1 and "must see the same --model_dir" in stderr, stderr
        assert "Traceback" not in stderr
    assert "ckpt-40.index" not in os.listdir(trained / "checkpoints")


# TensorFlow's CPU kernels cannot backpropagate dilated float16 convolutions; with dilation
# 1 everywhere (dilation_cycle=1) the float16 path, loss scaling included, runs on CPU too.
@pytest.mark.parametrize("precision, flags", [("mixed_bfloat16", []),
                                              ("mixed_float16", ["--dilation_cycle=1"])])
def test_mixed_precision_trains_and_resumes_in_float32(workspace, precision, flags):
    model_dir = workspace / precision
    mixed = command("train.py", f"--precision={precision}",
                *tiny_flags(workspace, model_dir, "--max_steps=20", "--checkpoint_every=10",
                            *flags))
    assert mixed.returncode == 0, mixed.stderr
    assert all(np.isfinite(losses(mixed.stdout)))
    resumed = command("train.py", "--precision=float32",
                  *tiny_flags(workspace, model_dir, "--max_steps=25", "--checkpoint_every=5",
                              *flags))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from step 20" in resumed.stdout
    assert all(np.isfinite(value).all() for value in weights(model_dir, 25).values())


def test_float16_dilated_training_on_cpu_is_refused(workspace):
    result = command("train.py", "--precision=mixed_float16",
                 *tiny_flags(workspace, workspace / "float16"))
    assert_one_line_refusal(result, "on CPU use --precision=mixed_bfloat16")
