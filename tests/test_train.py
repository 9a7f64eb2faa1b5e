"""train.py end to end on the tiny preset and the built-in tones."""

import glob
import os
import re

import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import TINY, command, copy_model, run


def train(workspace, model_dir, *flags):
    return command("train.py", *TINY, f"--model_dir={model_dir}",
               f"--cache_dir={workspace / 'cache'}", "--log_every=10", *flags)


def summaries(model_dir):
    events = EventAccumulator(str(model_dir), size_guidance={"tensors": 0})
    events.Reload()
    return events


def summary_tags(model_dir):
    return set(summaries(model_dir).Tags()["tensors"])


def checkpoint_steps(model_dir):
    return sorted(int(path.rsplit("-", 1)[1].split(".")[0])
                  for path in glob.glob(f"{model_dir}/checkpoints/ckpt-*.index"))


def test_trains_checkpoints_logs_warms_up_the_learning_rate_and_resumes(workspace):
    model_dir = workspace / "run"
    first = train(workspace, model_dir, "--max_steps=30", "--warmup_steps=20")
    assert first.returncode == 0, first.stderr
    assert "step 30/30" in first.stdout
    assert checkpoint_steps(model_dir) == [30]
    assert os.path.exists(model_dir / "params.json")
    tags = summary_tags(model_dir)
    assert {"train/loss", "val/loss", "train/learning_rate", "train/gradient_norm",
            "train/steps_per_s", "train/audio_seconds_per_s", "generated/audio",
            "generated/spectrogram", "real/audio", "real/spectrogram",
            "_hparams_/session_start_info"} <= tags
    rates = {point.step: float(tf.make_ndarray(point.tensor_proto))
             for point in summaries(model_dir).Tensors("train/learning_rate")}
    tiny_rate = 1e-3  # step n of 20 warm-up steps: n / 20 of it
    assert rates == pytest.approx({1: tiny_rate / 20, 2: tiny_rate / 10, 10: tiny_rate / 2,
                                   20: tiny_rate, 30: tiny_rate})

    second = train(workspace, model_dir, "--max_steps=40")
    assert second.returncode == 0, second.stderr
    assert "resuming from step 30" in second.stdout
    assert "step 40/40" in second.stdout and "step 10/" not in second.stdout
    assert checkpoint_steps(model_dir) == [30, 40]

    changed = train(workspace, model_dir, "--max_steps=50", "--residual_layers=3")
    assert changed.returncode != 0
    assert "residual_layers 2 -> 3" in changed.stderr and "Traceback" not in changed.stderr
    assert checkpoint_steps(model_dir) == [30, 40]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(workspace, model_dir, tmp_path):
    model_dir = copy_model(model_dir, tmp_path)
    exploded = train(workspace, model_dir, "--max_steps=40", "--learning_rate=1e30")
    assert exploded.returncode != 0
    assert "last good checkpoint" in exploded.stderr and "Traceback" not in exploded.stderr
    assert checkpoint_steps(model_dir) == [15, 30]
    reader = tf.train.load_checkpoint(str(model_dir / "checkpoints" / "ckpt-30"))
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if hasattr(value, "dtype") and value.dtype.kind == "f":
            assert tf.reduce_all(tf.math.is_finite(value)), name


def test_schedule_that_never_reaches_noise_is_refused(workspace):
    model_dir = workspace / "snr"
    result = train(workspace, model_dir, "--noise_steps=5", "--beta_end=0.02", "--sample_steps=5")
    assert result.returncode != 0
    assert "terminal SNR" in result.stderr and "--allow_high_snr" in result.stderr
    assert not os.path.exists(model_dir)


def losses(stdout):
    return [float(line.split("loss ")[1].split()[0]) for line in stdout.splitlines()
            if line.startswith("step ")]


def test_trains_with_onednn_off_and_on_and_the_paths_agree(workspace):
    """With oneDNN off, TensorFlow's stock CPU kernels cannot differentiate a dilated
    convolution: --dilated_conv=auto must choose the folded one and train. With oneDNN on, the
    direct one trains: both give the same losses (XLA's direct path: test_network)."""
    runs = {}
    for setting in ("0", "1"):
        result = run("train.py", *TINY,
                     f"--model_dir={workspace / ('onednn-' + setting)}",
                     f"--cache_dir={workspace / 'cache'}", "--log_every=1", "--max_steps=4",
                     "--sample_every=1000", env_extra={"TF_ENABLE_ONEDNN_OPTS": setting})
        assert result.returncode == 0, result.stderr
        runs[setting] = result
    assert "dilated convolutions: folded" in runs["0"].stdout
    assert "dilated convolutions: direct" in runs["1"].stdout
    expected = losses(runs["0"].stdout)
    assert len(expected) == 4 and len(set(expected)) == 4
    assert losses(runs["1"].stdout) == pytest.approx(expected, abs=2e-4)


def test_the_first_steps_are_shown_at_once_and_clips_shorter_than_a_frame_train(workspace):
    """--log_every=50 used to keep a slow run silent for 50 steps; clips under the 256-sample
    spectrogram frame aborted the process (an empty PNG) when samples were written."""
    model_dir = workspace / "short"
    result = train(workspace, model_dir, "--max_steps=3", "--log_every=50", "--clip_samples=128",
                   "--sample_every=3")
    assert result.returncode == 0, result.stderr
    shown = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in shown] == ["1/3", "2/3", "3/3"]
    assert "(tracing included)" in shown[0] and "s/step  ETA 0:00:0" in shown[1]
    assert {"generated/spectrogram", "real/spectrogram"} <= summary_tags(model_dir)
    assert "Sharding callback" not in result.stderr  # TensorFlow's INFO lines stay hidden


@pytest.mark.parametrize("script, wanted", [
    ("train.py", ["--data_dir", "--preset", "--batch_size", "--precision", "--model_dir",
                  "--max_steps", "--dilated_conv", "--cache_dir", "--strategy"]),
    ("generate.py", ["--model_dir", "--seconds", "--precision", "--jit", "--intra_op_threads",
                     "--sampler"]),
])
def test_help_lists_every_flag_the_readme_uses_and_exits_0(script, wanted):
    full, short = command(script, "--help"), command(script, "--helpshort")
    assert full.returncode == 0 and short.returncode == 0, full.stderr + short.stderr
    for flag in wanted:  # booleans read --[no]jit in absl's help
        assert re.search(rf"  --(\[no\])?{flag[2:]}:", full.stdout), flag
        assert f"  {flag}=" in short.stdout, flag
    assert len(short.stdout.splitlines()) < len(full.stdout.splitlines()) / 2


def test_the_moving_average_warms_up_then_decays_at_ema_decay(tmp_path):
    """Step n moves the EMA weights by 1 - min(ema_decay, (1 + n) / (10 + n)) of the way to the
    trained ones, so that early checkpoints no longer generate with mostly random weights."""
    import numpy as np
    import params as params_lib
    from diffusion import training as train_lib

    params = params_lib.preset("tiny", batch_size=2, clip_samples=256, learning_rate=1e-2,
                               residual_layers=2)
    trainer = train_lib.Trainer(params, None, str(tmp_path), dilated_conv="folded")
    x0 = 0.1 * tf.random.normal([2, 256, 1], seed=1)
    batch = {"audio": x0, "steps": tf.constant([3.0, 30.0]),
             "noise": tf.random.normal([2, 256, 1], seed=2)}
    for done, number in ((0, 1), (1, 2), (10 ** 6, 10 ** 6 + 1)):
        trainer.step.assign(done)  # what the loop has finished before this step
        before = [w.numpy() for w in trainer.ema.trainable_variables]
        trainer.train_step(batch)
        decay = min(params.ema_decay, (1 + number) / (10 + number))
        for average, old, weight in zip(trainer.ema.trainable_variables, before,
                                        trainer.model.trainable_variables):
            np.testing.assert_allclose(average.numpy(), decay * old + (1 - decay) * weight.numpy(),
                                       rtol=1e-5, atol=1e-7)
    moved = [np.abs(w.numpy() - v.numpy()).max() for w, v in
             zip(trainer.ema.trainable_variables, trainer.model.trainable_variables)]
    assert max(moved) > 0  # the weights trained, and the average lags them


@pytest.mark.parametrize("gradient_clip", [1e-3, 1e6])
def test_gradients_are_clipped_to_their_global_norm(tmp_path, gradient_clip):
    """Adam's first moment after one step is (1 - beta_1) times the gradient it was given: the
    gradient scaled to global norm gradient_clip when its norm is above that, else untouched."""
    import numpy as np
    import params as params_lib
    from diffusion import training as train_lib

    params = params_lib.preset("tiny", batch_size=2, clip_samples=256,
                               gradient_clip=gradient_clip, residual_layers=2)
    trainer = train_lib.Trainer(params, None, str(tmp_path), dilated_conv="folded")
    x0 = 0.1 * tf.random.normal([2, 256, 1], seed=1)
    batch = {"audio": x0, "steps": tf.constant([3.0, 30.0]),
             "noise": tf.random.normal([2, 256, 1], seed=2)}
    _, norm = trainer.train_step(batch)
    assert 1e-3 < float(norm) < 1e6
    momentum = [v for v in trainer.optimizer.variables if v.path.endswith("_momentum")]
    applied = float(tf.linalg.global_norm(momentum)) / (1 - trainer.optimizer.beta_1)
    np.testing.assert_allclose(applied, min(float(norm), gradient_clip), rtol=1e-4)


def test_init_from_starts_a_fresh_run_from_another_models_ema_weights(workspace, model_dir):
    """Fine-tuning: the new run's weights start as the source's EMA, its step counter and
    optimiser at zero; a changed architecture and a folder without checkpoints are refused in
    one line; a run that has checkpoints resumes and ignores --init_from."""
    source, tuned = model_dir, workspace / "tuned"
    result = train(workspace, tuned, f"--init_from={source}", "--max_steps=1",
                   "--learning_rate=1e-12", "--seed=5")
    assert result.returncode == 0, result.stderr
    assert f"starting from the EMA weights of {source}/checkpoints/ckpt-30" in result.stdout
    assert "step 1/1" in result.stdout
    from network import DiffWave, checkpoints
    params = checkpoints.load_params(str(tuned))
    started, tuned_model = (DiffWave(params, "direct").build_for() for _ in range(2))
    checkpoints.restore(str(source / "checkpoints" / "ckpt-30"), ema=started)
    checkpoints.restore(str(tuned / "checkpoints" / "ckpt-1"), model=tuned_model)
    for expected, got in zip(started.weights, tuned_model.weights):
        assert abs(got.numpy() - expected.numpy()).max() < 1e-6, got.path
    counters = tf.train.load_checkpoint(str(tuned / "checkpoints" / "ckpt-1"))
    assert counters.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 1
    assert counters.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 1

    wider = train(workspace, workspace / "wider", f"--init_from={source}",
                  "--residual_channels=32", "--max_steps=1")
    assert wider.returncode != 0 and wider.stderr.strip().splitlines()[-1] == (
        f"error: --init_from={source} holds a model with other architecture/diffusion params "
        "(residual_channels 16 -> 32); drop those flags to fine-tune it, or train from scratch "
        "without --init_from")
    empty = workspace / "empty"
    empty.mkdir()
    (empty / "params.json").write_text((source / "params.json").read_text())
    refused = train(workspace, workspace / "other", f"--init_from={empty}", "--max_steps=1")
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines()[-1].startswith(
        f"error: --init_from={empty} holds no checkpoint")
    resumed = train(workspace, tuned, f"--init_from={source}", "--max_steps=2")
    assert resumed.returncode == 0, resumed.stderr
    assert "--init_from ignored" in resumed.stdout and "resuming from step 1" in resumed.stdout


def test_an_unbounded_max_steps_prints_no_eta(tmp_path, capsys):
    """bench/recipe.py runs --max_steps=10000000 and stops by signal: 'ETA 2777:46:30' was
    noise; a reachable end still gets its ETA."""
    import params as params_lib
    from diffusion import training

    params = params_lib.preset("tiny", batch_size=2, clip_samples=256, residual_layers=2)
    trainer = training.Trainer(params, None, str(tmp_path), dilated_conv="folded")
    trainer.log_progress(10, 10_000_000, 0.1, 1.0, 1.0)
    trainer.log_progress(10, 20, 0.1, 1.0, 1.0)
    unbounded, bounded = capsys.readouterr().out.splitlines()
    assert "ETA" not in unbounded and unbounded.endswith("s/step")
    assert bounded.endswith("s/step  ETA 0:00:10")
