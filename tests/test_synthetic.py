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


def test_held_notes_are_deterministic_and_each_note_is_held():
    first, spec = synthetic.held_notes(7, 3, RATE, 3 * RATE, 3300.0)
    again, _ = synthetic.held_notes(7, 3, RATE, 3 * RATE, 3300.0)
    np.testing.assert_array_equal(first, again)
    assert first.dtype == np.float32 and np.isclose(np.abs(first).max(), 0.5)
    counts = set()
    for index in range(30):
        audio, spec = synthetic.held_notes(0, index, RATE, 3 * RATE, 3300.0)
        counts.add(len(spec.onsets))
        ends = list(spec.onsets[1:]) + [3.0]
        assert spec.onsets[0] == 0
        assert min(np.subtract(ends, spec.onsets)) >= synthetic.MIN_HELD_SECONDS - 1e-9
        for onset, end, chord in zip(spec.onsets, ends, spec.midi_pitches):
            # The middle of each note: its energy sits at the harmonics of the chord's pitches,
            # and its level holds (the second half within 4 dB of the first).
            middle = audio[int((onset + 0.1) * RATE):int((end - 0.1) * RATE)]
            halves = np.array_split(middle, 2)
            assert 10 * np.log10(np.mean(halves[0] ** 2) / np.mean(halves[1] ** 2)) < 4
            spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle)))) ** 2
            frequencies = np.fft.rfftfreq(len(middle), 1 / RATE)
            near = np.zeros_like(spectrum, bool)
            for pitch in chord:
                f0 = synthetic.midi_to_hz(pitch)
                for k in range(1, synthetic.MAX_PARTIALS + 1):
                    # stiff-string partials: k f0 up to k f0 sqrt(1 + 2e-3 k^2); window smear
                    smear = 4 * frequencies[1]
                    near |= ((frequencies > k * f0 - smear)
                             & (frequencies < k * f0 * np.sqrt(1 + 2e-3 * k ** 2) + smear))
            assert spectrum[near].sum() / spectrum.sum() > 0.9
    assert counts == {2, 3, 4}
