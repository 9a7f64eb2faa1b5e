"""Runs that get killed or stopped: they resume, never go backwards, and lose at most one
checkpoint interval; every checkpoint left on disk loads."""

import glob
import random
import re
import signal
import subprocess
import sys

import pytest

import params as params_lib
from conftest import ROOT
from network import checkpoints
from test_cli import run

CHECKPOINT_EVERY = 10
TRAIN = ["train.py", "--preset=tiny", "--synthetic_tones=32", "--log_every=1",
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


def test_sigkill_at_random_moments_then_resume(tmp_path):
    rng = random.Random(1)
    model_dir, cache_dir, final = tmp_path / "model", tmp_path / "cache", 80
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
def test_sigterm_and_sigint_save_the_step_reached(tmp_path, signal_number):
    model_dir = tmp_path / "model"
    process = start(model_dir, tmp_path / "cache", 100000)
    _, seen = read_until(process, 15)  # 15: between two checkpoints
    process.send_signal(signal_number)
    stdout, stderr = process.communicate(timeout=120)
    stopped_at = int(re.search(r"stopped by SIG\w+ at step (\d+)", stderr).group(1))
    assert process.returncode == 128 + signal_number
    assert stopped_at >= seen and saved_steps(model_dir)[-1] == stopped_at
    assert "Traceback" not in stderr
    assert_every_checkpoint_loads(model_dir)
    resumed = run(*TRAIN, f"--model_dir={model_dir}", f"--cache_dir={tmp_path / 'cache'}",
                  f"--max_steps={stopped_at + 2}")
    assert resumed.returncode == 0 and f"resuming from step {stopped_at}" in resumed.stdout
