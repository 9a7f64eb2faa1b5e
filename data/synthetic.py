"""The built-in dataset: random harmonic tones, so nothing has to be downloaded.

Each tone (as in the WaveGrad teaching notebook's toy set) has a random MIDI pitch in 40-60,
a random number of partials with random inharmonicity, a gentle attack and decay, and is shaped
by a resonant band-pass filter at a random centre. Tones are made at the input rate and then go
through exactly the same low-pass, decimation and clipping as real files.
"""

import dataclasses

import numpy as np
import scipy.signal

MIDI_PITCH_RANGE = (40, 60)
MAX_PARTIALS = 12


@dataclasses.dataclass(frozen=True)
class ToneSpec:
    midi_pitch: int
    partial_frequencies: tuple  # Hz, all below `max_frequency`
    resonance_hz: float


def midi_to_hz(pitch):
    return 440.0 * 2.0 ** ((pitch - 69) / 12)


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
    fundamental = midi_to_hz(pitch)
    inharmonicity = rng.uniform(0.0, 2e-3)
    numbers = np.arange(1, int(rng.integers(1, MAX_PARTIALS + 1)) + 1)
    # Stiff-string partials: f_k = k f0 sqrt(1 + B k^2).
    frequencies = numbers * fundamental * np.sqrt(1.0 + inharmonicity * numbers ** 2)
    numbers, frequencies = numbers[frequencies < max_frequency], frequencies[frequencies < max_frequency]
    amplitudes = numbers ** -rng.uniform(0.5, 2.0)
    phases = rng.uniform(0, 2 * np.pi, len(numbers))

    time = np.arange(num_samples) / rate
    tone = (amplitudes[:, None] * np.sin(2 * np.pi * frequencies[:, None] * time + phases[:, None])).sum(0)
    envelope = np.minimum(1.0, time / 0.01) * np.exp(-time * rng.uniform(0.2, 3.0))

    resonance = rng.uniform(fundamental, max_frequency)
    b, a = scipy.signal.iirpeak(resonance, Q=rng.uniform(1.0, 8.0), fs=rate)
    tone = scipy.signal.lfilter(b, a, tone * envelope)
    tone *= 0.5 / np.abs(tone).max()
    return tone.astype(np.float32), ToneSpec(pitch, tuple(frequencies), resonance)
