"""held_notes.py on signals whose answer is known: held tones score near 1, noise and drums
near 0, a steady whistle across a whole clip is a whistle, not a note."""

import numpy as np
import pytest

import held_notes
from data import synthetic

RATE = 7350
TIME = np.arange(4 * RATE) / RATE


def measure(audio, rate=RATE):
    return held_notes.clip_measure(audio, rate)


def test_a_held_sine_and_a_held_chord_score_near_the_top():
    sine = np.sin(2 * np.pi * 440 * TIME) * np.minimum(1, TIME / 0.02)
    chord = sum(np.sin(2 * np.pi * f * TIME) for f in (262, 330, 392)) * np.exp(-TIME * 0.3)
    for audio in (sine, chord):
        result = measure(audio)
        assert result["held_share"] > 0.9 and result["whistle_share"] == 0


def test_vibrato_is_still_a_held_note():
    """5.5 Hz vibrato of +-3 %: the partial moves several bins but stays one track."""
    vibrato = np.sin(2 * np.pi * 440 * TIME + 440 * 0.03 / 5.5 * np.sin(2 * np.pi * 5.5 * TIME))
    assert measure(vibrato)["held_share"] > 0.8


def test_white_and_shaped_noise_hold_no_notes():
    rng = np.random.default_rng(0)
    white = rng.standard_normal(len(TIME))
    shaped = np.fft.irfft(np.fft.rfft(white) / np.maximum(1, np.fft.rfftfreq(len(TIME), 1 / RATE)
                                                          / 100), len(TIME))
    for audio in (white, shaped):
        assert measure(audio)["held_share"] < 0.02


def test_a_drum_loop_scores_low():
    """Kicks (a pitched decay falling from 120 to 50 Hz), snares and hi-hats at 120 bpm."""
    rng = np.random.default_rng(1)
    loop = np.zeros(len(TIME) + RATE)
    hit = np.arange(int(0.4 * RATE)) / RATE
    for beat in range(8):
        start = int(beat * 0.5 * RATE)
        sweep = 50 * hit + 70 / 30 * (1 - np.exp(-hit * 30))  # phase of 120 -> 50 Hz
        kick = np.sin(2 * np.pi * sweep) * np.exp(-hit * 25)
        loop[start:start + len(hit)] += kick
        snare = start + int(0.25 * RATE)
        loop[snare:snare + len(hit)] += 0.5 * rng.standard_normal(len(hit)) * np.exp(-hit * 25)
        for eighth in range(4):
            hat = start + int(eighth * 0.125 * RATE)
            loop[hat:hat + len(hit)] += 0.2 * rng.standard_normal(len(hit)) * np.exp(-hit * 80)
    assert measure(loop[:len(TIME)])["held_share"] < 0.05


def test_a_steady_whistle_is_reported_as_a_whistle_and_found_in_every_clip():
    rng = np.random.default_rng(2)
    time = np.arange(10 * RATE) / RATE
    clips = [0.1 * np.sin(2 * np.pi * 1837.5 * time) + 0.1 * rng.standard_normal(len(time))
             for _ in range(3)]
    result = measure(clips[0])
    assert result["held_share"] < 0.01
    assert result["whistle_share"] == pytest.approx(1 / 3, abs=0.05)  # the sine's energy share
    folder = held_notes.folder_measure(clips, RATE)
    assert folder["steady_hz"] and all(abs(f - 1837.5) <= 15 for f in folder["steady_hz"])
    # Notes of different pitch clip to clip are no steady frequency.
    notes = [np.sin(2 * np.pi * f * time) for f in (300, 450, 700)]
    assert held_notes.folder_measure(notes, RATE)["steady_hz"] == []


def test_the_built_in_held_notes_hold_and_silence_scores_zero():
    clips = [synthetic.held_notes(1234, index, 22050, 72000, 1100.0)[0][::9] for index in range(6)]
    assert held_notes.folder_measure(clips, 2450)["held_share"] > 0.8
    assert measure(np.zeros(RATE))["held_share"] == 0
