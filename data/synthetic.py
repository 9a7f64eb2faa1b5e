"""The built-in datasets, so nothing has to be downloaded: random harmonic tones, or held notes.

`tones` (as in the WaveGrad teaching notebook's toy set): one tone a clip, with a random MIDI
pitch in 40-60, a random number of partials with random inharmonicity, a gentle attack and a
decay of random speed, shaped by a resonant band-pass filter at a random centre.
`held_notes`: a short melody of held notes or chords (two to four of them a clip, each held
0.5 s or more with a slow decay, so every partial is a horizontal line of a spectrogram), the
simplest data on which a model can show that it learned pitch.
Both are made at the input rate and then go through exactly the same low-pass, decimation and
clipping as real files.
"""

import dataclasses

import numpy as np
import scipy.signal

MIDI_PITCH_RANGE = (40, 60)
MAX_PARTIALS = 12
HELD_NOTES_PER_CLIP = (2, 4)
MIN_HELD_SECONDS = 0.5
CHORD_INTERVALS = ((0,), (0, 4, 7), (0, 3, 7), (0, 7), (0, 5, 9))  # semitones above the root


@dataclasses.dataclass(frozen=True)
class ToneSpec:
    midi_pitch: int
    partial_frequencies: tuple  # Hz, all below `max_frequency`
    resonance_hz: float


@dataclasses.dataclass(frozen=True)
class HeldNotesSpec:
    onsets: tuple         # seconds from the clip's start, one per note, the first 0
    midi_pitches: tuple   # a tuple of MIDI pitches (a chord) per note


def midi_to_hz(pitch):
    return 440.0 * 2.0 ** ((pitch - 69) / 12)


def _harmonic_partials(rng, pitch, time, max_frequency):
    """Sum of a random stiff-string partial series of `pitch` over `time` (seconds, [n]), with
    partials at or above max_frequency left out. Returns (float64 [n], partial frequencies)."""
    fundamental = midi_to_hz(pitch)
    inharmonicity = rng.uniform(0.0, 2e-3)
    numbers = np.arange(1, int(rng.integers(1, MAX_PARTIALS + 1)) + 1)
    # Stiff-string partials: f_k = k f0 sqrt(1 + B k^2).
    frequencies = numbers * fundamental * np.sqrt(1.0 + inharmonicity * numbers ** 2)
    kept = frequencies < max_frequency
    numbers, frequencies = numbers[kept], frequencies[kept]
    amplitudes = numbers ** -rng.uniform(0.5, 2.0)
    phases = rng.uniform(0, 2 * np.pi, len(numbers))
    tone = (amplitudes[:, None] * np.sin(2 * np.pi * frequencies[:, None] * time
                                         + phases[:, None])).sum(0)
    return tone, tuple(frequencies)


def harmonic_tone(seed, index, rate, num_samples, max_frequency):
    """One random tone; the same (seed, index) always gives the same tone.

    Args:
      seed, index: ints choosing the tone.
      rate: Hz.
      num_samples: length.
      max_frequency: Hz; partials at or above it are left out (keep it inside the passband
        of the decimation filter so every partial survives).
    Returns:
      (float32 [num_samples] with peak 0.5, ToneSpec).
    """
    rng = np.random.default_rng([seed, index])
    pitch = int(rng.integers(MIDI_PITCH_RANGE[0], MIDI_PITCH_RANGE[1] + 1))
    time = np.arange(num_samples) / rate
    tone, frequencies = _harmonic_partials(rng, pitch, time, max_frequency)
    envelope = np.minimum(1.0, time / 0.01) * np.exp(-time * rng.uniform(0.2, 3.0))

    fundamental = midi_to_hz(pitch)
    resonance = rng.uniform(fundamental, max_frequency)
    b, a = scipy.signal.iirpeak(resonance, Q=rng.uniform(1.0, 8.0), fs=rate)
    tone = scipy.signal.lfilter(b, a, tone * envelope)
    tone *= 0.5 / np.abs(tone).max()
    return tone.astype(np.float32), ToneSpec(pitch, frequencies, resonance)


def held_notes(seed, index, rate, num_samples, max_frequency):
    """A random melody of held notes or chords filling the clip; the same (seed, index) always
    gives the same melody.

    Notes follow one another with no gap; each lasts at least MIN_HELD_SECONDS (the whole clip
    when it is shorter than two of them), rises in 10-30 ms, decays by at most 4 dB a second and
    fades out over its last 30 ms. Arguments as harmonic_tone's.
    Returns:
      (float32 [num_samples] with peak 0.5, HeldNotesSpec).
    """
    rng = np.random.default_rng([seed, index, 1])
    duration = num_samples / rate
    count = int(rng.integers(HELD_NOTES_PER_CLIP[0], HELD_NOTES_PER_CLIP[1] + 1))
    count = max(1, min(count, int(duration // MIN_HELD_SECONDS)))
    # Note lengths: MIN_HELD_SECONDS each plus a random share of what is left.
    spare = duration - count * MIN_HELD_SECONDS
    lengths = MIN_HELD_SECONDS + rng.dirichlet(np.ones(count)) * spare
    onsets = np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
    time = np.arange(num_samples) / rate
    audio = np.zeros(num_samples)
    chords = []
    for onset, length in zip(onsets, lengths):
        root = int(rng.integers(MIDI_PITCH_RANGE[0], MIDI_PITCH_RANGE[1] + 1))
        chord = tuple(root + step for step in CHORD_INTERVALS[rng.integers(len(CHORD_INTERVALS))])
        chords.append(chord)
        inside = (time >= onset) & (time < onset + length)
        local = time[inside] - onset
        envelope = (np.minimum(1.0, local / rng.uniform(0.01, 0.03))
                    * 10 ** (-rng.uniform(0.0, 4.0) * local / 20)
                    * np.clip((length - local) / 0.03, 0.0, 1.0))
        for pitch in chord:
            partials, _ = _harmonic_partials(rng, pitch, local, max_frequency)
            audio[inside] += envelope * partials / len(chord)
    audio *= 0.5 / max(np.abs(audio).max(), 1e-9)
    return audio.astype(np.float32), HeldNotesSpec(tuple(map(float, onsets)), tuple(chords))
