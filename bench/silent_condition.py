"""An upsampler given silence: what it writes there is what the network adds by itself.

  python bench/silent_condition.py --model_dir=pretrained/soundtracks-cascade/up7350 \\
      [--clips=8 --seconds=10]

The upsampler generates --clips clips of --seconds (its `fast` plan, EMA weights, condition
level 0) from an all-zero condition, and prints one JSON line: their RMS, the held-note
measure (held_notes.py: whistle_share and steady_hz, the frequencies that are a peak in nearly
every clip), and the level of the spectrum at a quarter of the rate, in dB over the median of
its +-60 Hz neighbourhood (a whistle there is the gridding of dilations that are multiples of
4: such layers see only samples whose positions agree modulo 4).
"""

import argparse
import json
import os
import sys

import numpy as np
import scipy.signal

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import held_notes  # noqa: E402
from diffusion import generation  # noqa: E402


def level_over_neighbourhood(clips, rate, frequency, radius_hz=60.0):
    """dB of the mean power spectrum at `frequency` over the median within +-radius_hz."""
    frequencies, power = scipy.signal.welch(clips, rate, nperseg=4096, axis=-1)
    power = power.mean(axis=0)
    at = np.argmin(np.abs(frequencies - frequency))
    near = np.abs(frequencies - frequency) <= radius_hz
    return float(10 * np.log10(power[at] / np.median(power[near])))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="an upsampler's folder")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    stage = generation.Stage.load(args.model_dir)
    params = stage.params
    if not params.upsample_from:
        sys.exit(f"error: --model_dir={args.model_dir} is not an upsampler (upsample_from 0)")
    samples = round(args.seconds * params.sample_rate)
    below = np.zeros([args.clips, samples // (params.sample_rate // params.upsample_from) + 1, 1],
                     np.float32)
    audio = stage.generate(args.clips, samples, below=below).numpy()[..., 0]
    notes = held_notes.folder_measure(list(audio), params.sample_rate)
    print(json.dumps({
        "model_dir": args.model_dir, "checkpoint": stage.checkpoint, "rate": params.sample_rate,
        "clips": args.clips, "seconds": args.seconds,
        "rms": round(float(np.sqrt(np.mean(audio ** 2))), 5),
        "whistle_share": round(notes["whistle_share"], 4), "steady_hz": notes["steady_hz"],
        "quarter_rate_db": round(level_over_neighbourhood(audio, params.sample_rate,
                                                          params.sample_rate / 4), 1)}))


if __name__ == "__main__":
    main()
