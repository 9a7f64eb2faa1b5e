"""Shared helpers: tests make their own audio in temporary folders."""

import os
import sys

import numpy as np
import pytest
import soundfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED_MUSIC = os.path.join(ROOT, "..", "shared", "audio", "music")

import params as params_lib  # noqa: E402


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
