"""Draws the README's figures into images/. Needs matplotlib (not a project dependency):

  pip install matplotlib && python images/make_figures.py
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402

import params as params_lib  # noqa: E402
from data import lowpass, synthetic  # noqa: E402


def lowpass_figure(params, path):
    taps = lowpass.design_lowpass(params)
    frequencies, response = scipy.signal.freqz(taps, worN=1 << 15, fs=params.input_rate)
    gain_db = 20 * np.log10(np.maximum(np.abs(response), 1e-12))
    fig, (full, passband) = plt.subplots(1, 2, figsize=(10, 3.5))
    for axis in (full, passband):
        axis.plot(frequencies, gain_db)
        axis.axvline(params.sample_rate / 2, color="r", ls="--", label="new Nyquist")
        axis.set_xlabel("Hz")
        axis.grid(alpha=0.3)
    full.axhline(-60, color="k", ls=":", label="-60 dB requirement")
    full.set_ylim(-120, 5)
    full.set_ylabel("gain (dB)")
    full.set_title(f"Anti-aliasing low-pass, {len(taps)} taps")
    full.legend(loc="lower left")
    edge = lowpass.passband_edge(params)
    passband.set_xlim(0, edge)
    passband.set_ylim(-0.02, 0.02)
    passband.set_title(f"Passband (to {edge:.0f} Hz): ripple in dB")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def tones_figure(params, path):
    rate = params.input_rate
    fig, axes = plt.subplots(1, 4, figsize=(12, 3), sharey=True)
    for index, axis in enumerate(axes):
        audio, spec = synthetic.harmonic_tone(params.synthetic_seed, index, rate, rate,
                                              lowpass.passband_edge(params))
        axis.specgram(audio, NFFT=1024, Fs=rate, noverlap=768, cmap="magma")
        axis.set_ylim(0, params.sample_rate / 2)
        axis.set_title(f"MIDI {spec.midi_pitch}, {len(spec.partial_frequencies)} partials")
        axis.set_xlabel("s")
    axes[0].set_ylabel("Hz")
    fig.suptitle("Built-in tones (first four of the dataset)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    params = params_lib.preset("base")
    here = os.path.dirname(os.path.abspath(__file__))
    lowpass_figure(params, os.path.join(here, "lowpass_response.png"))
    tones_figure(params, os.path.join(here, "builtin_tones.png"))
