"""Shared helpers: tests make their own audio in temporary folders."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED_MUSIC = os.path.join(ROOT, "..", "shared", "audio", "music")

import params as params_lib  # noqa: E402

# What every training run in the tests trains: the tiny preset on a few built-in tones, cut to
# two residual layers (dilations 1 and 2), because tracing a training step costs about a second
# per layer and is most of a short run's time.
TINY = ["--preset=tiny", "--synthetic_tones=32", "--residual_layers=2"]


def tone(seconds, rate, frequency=440.0, amplitude=0.5, channels=1):
    """A sine, float32 [time] or [time, channels]."""
    time = np.arange(int(seconds * rate)) / rate
    audio = (amplitude * np.sin(2 * np.pi * frequency * time)).astype(np.float32)
    return audio if channels == 1 else np.stack([audio] * channels, axis=1)


def write_audio(path, audio, rate, subtype="PCM_16", **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    soundfile.write(path, audio, rate, subtype=subtype, **kwargs)
    return path


@pytest.fixture
def tiny_params():
    """The tiny preset with short clips so a few seconds of audio give several clips."""
    return params_lib.preset("tiny", clip_samples=1024, synthetic_tones=24, batch_size=4)


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "cache")


def run(*args, env_extra=None):
    """A command of this project (`python ARGS` in the repository root), as a user runs it."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300)


def copy_model(model_dir, tmp_path):
    """A copy of a model dir in tmp_path, to change."""
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    return copy


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """TINY trained for 30 steps, checkpoints at 15 and 30: one run for every module that needs
    a trained model dir (read-only: copy it to change it). Its clip cache is the folder `cache`
    beside it."""
    workspace = tmp_path_factory.mktemp("trained")
    result = run("train.py", *TINY, "--max_steps=30", "--checkpoint_every=15",
                 f"--model_dir={workspace / 'model'}", f"--cache_dir={workspace / 'cache'}")
    assert result.returncode == 0, result.stderr
    return workspace / "model"
