"""Runs that get killed or stopped: they resume, never go backwards, and lose at most one
checkpoint interval; every checkpoint left on disk loads."""

import glob
import os
import random
import re
import resource
import signal
import subprocess
import sys

import pytest

import params as params_lib
from conftest import ROOT, TINY, command, copy_model
from network import checkpoints

CHECKPOINT_EVERY = 10
TRAIN = ["train.py", *TINY, "--log_every=1",
         f"--checkpoint_every={CHECKPOINT_EVERY}", "--sample_every=100000"]


def start(model_dir, cache_dir, max_steps):
    return subprocess.Popen(
        [sys.executable, *TRAIN, f"--model_dir={model_dir}", f"--cache_dir={cache_dir}",
         f"--max_steps={max_steps}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def read_until(process, wanted_step):
    """Reads progress lines until step >= wanted_step; returns (resumed from, last step seen)."""
    resumed, seen = 0, 0
    for line in process.stdout:
        if match := re.match(r"resuming from step (\d+)", line):
            resumed = int(match.group(1))
        if match := re.match(r"step (\d+)/", line):
            seen = int(match.group(1))
            if seen >= wanted_step:
                break
    return resumed, seen


def saved_steps(model_dir):
    return sorted(int(re.search(r"ckpt-(\d+)\.index$", path).group(1))
                  for path in glob.glob(f"{model_dir}/checkpoints/ckpt-*.index"))


def assert_every_checkpoint_loads(model_dir):
    params = params_lib.Params.load(str(model_dir / "params.json"))
    for step in saved_steps(model_dir):
        prefix = str(model_dir / "checkpoints" / f"ckpt-{step}")
        checkpoints.load_model(params, prefix, ema=True)
        checkpoints.load_model(params, prefix, ema=False)


def test_sigkill_at_random_moments_then_resume(tmp_path, clips):
    rng = random.Random(1)
    model_dir, cache_dir, final = tmp_path / "model", clips, 80
    # Kill targets: mid-interval steps, and steps whose checkpoint is being written as the
    # progress line arrives (the save follows it at once).
    targets = [rng.randrange(3, 9), 20, rng.randrange(31, 39), 50]
    progress = 0  # the highest step known to have been trained
    for target in targets:
        process = start(model_dir, cache_dir, final)
        resumed, seen = read_until(process, target)
        process.kill()
        process.wait()
        assert resumed <= progress and resumed >= progress - CHECKPOINT_EVERY, (resumed, progress)
        assert seen >= resumed
        progress = max(progress, seen)
        assert_every_checkpoint_loads(model_dir)
    before = max(saved_steps(model_dir))
    process = start(model_dir, cache_dir, final)
    resumed, seen = read_until(process, final)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    assert resumed == before and progress - CHECKPOINT_EVERY <= resumed <= progress
    assert seen == final and max(saved_steps(model_dir)) == final
    assert_every_checkpoint_loads(model_dir)


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_save_the_step_reached(tmp_path, clips, signal_number):
    model_dir = tmp_path / "model"
    process = start(model_dir, clips, 100000)
    _, seen = read_until(process, 15)  # 15: between two checkpoints
    process.send_signal(signal_number)
    stdout, stderr = process.communicate(timeout=120)
    stopped_at = int(re.search(r"stopped by SIG\w+ at step (\d+)", stderr).group(1))
    assert process.returncode == 128 + signal_number
    assert stopped_at >= seen and saved_steps(model_dir)[-1] == stopped_at
    assert "Traceback" not in stderr
    assert_every_checkpoint_loads(model_dir)
    resumed = command(*TRAIN, f"--model_dir={model_dir}", f"--cache_dir={clips}",
                      f"--max_steps={stopped_at + 2}")
    assert resumed.returncode == 0 and f"resuming from step {stopped_at}" in resumed.stdout


def test_a_deleted_index_file_resumes_from_the_newest_checkpoint_and_overwrites_nothing(
        model_dir, tmp_path, clips):
    model_dir = copy_model(model_dir, tmp_path)
    trained = {path: open(path, "rb").read()
               for path in glob.glob(f"{model_dir}/checkpoints/ckpt-30.*")}
    (model_dir / "checkpoints" / "checkpoint").unlink()
    again = command(*TRAIN, f"--model_dir={model_dir}", f"--cache_dir={clips}",
                    "--max_steps=32")
    assert again.returncode == 0, again.stderr
    assert "resuming from step 30" in again.stdout and "checkpoint was missing" in again.stderr
    assert all(open(path, "rb").read() == data for path, data in trained.items())
    assert saved_steps(model_dir) == [15, 30, 32]


def test_a_second_train_on_the_same_model_dir_is_refused_and_a_killed_one_leaves_no_lock(
        tmp_path, clips):
    model_dir, cache = tmp_path / "model", clips
    first = start(model_dir, cache, 100000)
    read_until(first, 1)
    second = command(*TRAIN, f"--model_dir={model_dir}", f"--cache_dir={cache}", "--max_steps=5")
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 1 and len(lines) == 1, second.stderr
    assert f"is being trained by train.py, process {first.pid}" in lines[0]
    first.kill()
    first.wait()
    third = command(*TRAIN, f"--model_dir={model_dir}", f"--cache_dir={cache}", "--max_steps=2")
    assert third.returncode == 0, third.stderr


def limited_file_size(size):
    """For Popen's preexec_fn: writes past `size` bytes fail with EFBIG, as on a full disk."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return limit


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(model_dir, tmp_path, clips):
    # The clip cache that trained model_dir: only the checkpoint is written under the limit.
    cache = f"--cache_dir={clips}"
    model_dir = copy_model(model_dir, tmp_path)
    size = sum(os.path.getsize(path) for path in glob.glob(f"{model_dir}/checkpoints/ckpt-30.*"))
    full = subprocess.run([sys.executable, *TRAIN, f"--model_dir={model_dir}", cache,
                           "--max_steps=40"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          preexec_fn=limited_file_size(size // 2))
    lines = full.stderr.strip().splitlines()
    assert full.returncode == 1 and lines[-1].startswith("error: cannot save the checkpoint of "
                                                         "step 40"), full.stderr
    assert "resume from" in lines[-1] and "ckpt-30" in lines[-1]
    assert "Traceback" not in full.stderr
    assert saved_steps(model_dir) == [15, 30]
    assert_every_checkpoint_loads(model_dir)
    assert not glob.glob(f"{model_dir}/checkpoints/*temp*")


def test_a_full_disk_while_preprocessing_is_one_line_and_leaves_no_partial_cache(tmp_path):
    """The error ends the process: the tf.data iterator it interrupted (its threads need the
    GIL) used to outlive it until the interpreter's exit, and hang there."""
    full = subprocess.run([sys.executable, *TRAIN, f"--model_dir={tmp_path / 'model'}",
                           f"--cache_dir={tmp_path / 'cache'}", "--max_steps=2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=limited_file_size(100_000))
    lines = full.stderr.strip().splitlines()
    assert full.returncode == 1 and "cannot write the clip cache" in lines[-1], full.stderr
    assert "File too large" in lines[-1] and "Traceback" not in full.stderr
    assert os.listdir(tmp_path / "cache") == []
