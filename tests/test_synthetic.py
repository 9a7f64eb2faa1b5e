import numpy as np

from data import synthetic

RATE = 22050


def test_tones_are_deterministic_and_varied():
    first, spec = synthetic.harmonic_tone(7, 3, RATE, 8192, 3300.0)
    again, _ = synthetic.harmonic_tone(7, 3, RATE, 8192, 3300.0)
    other, _ = synthetic.harmonic_tone(7, 4, RATE, 8192, 3300.0)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert first.dtype == np.float32 and np.isclose(np.abs(first).max(), 0.5)


def test_pitch_and_partials_follow_the_spec():
    pitches, partial_counts = set(), set()
    for index in range(40):
        audio, spec = synthetic.harmonic_tone(0, index, RATE, RATE, 3300.0)
        assert synthetic.MIDI_PITCH_RANGE[0] <= spec.midi_pitch <= synthetic.MIDI_PITCH_RANGE[1]
        fundamental = synthetic.midi_to_hz(spec.midi_pitch)
        assert spec.partial_frequencies[0] >= fundamental  # inharmonicity only raises partials
        assert max(spec.partial_frequencies) < 3300.0
        pitches.add(spec.midi_pitch)
        partial_counts.add(len(spec.partial_frequencies))
        # The energy sits at the stated partials (1 s of audio: 1 Hz bins).
        spectrum = np.abs(np.fft.rfft(audio)) ** 2
        near = np.zeros_like(spectrum, bool)
        for frequency in spec.partial_frequencies:
            near[max(0, int(frequency) - 4):int(frequency) + 6] = True
        assert spectrum[near].sum() / spectrum.sum() > 0.9
    assert len(pitches) > 8 and len(partial_counts) > 4
