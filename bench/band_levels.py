"""Each band's level and how much it moves, in folders of audio: does a cascade's top band sound
as loud, and as alive, as real music's? (An unpaired check: a cascade generates from noise, so
there is no real clip to take a log-spectral distance to.)

  python bench/band_levels.py --rate=22050 GENERATED YARDSTICK/reference [...]

Prints one JSON line per folder: for each band between the --edges (Hz, the cascade's stage
edges by default), the mean level of its STFT power in dB relative to the whole spectrum's
(`level_db`: a band 5 dB quieter than the reference's is 5 dB too quiet in the mix, whatever the
files' gain) and the standard deviation of that level over frames (`frame_std_db`: near 0 for
steady noise, several dB for music, whose notes and beats come and go); and `loudness_std_db`,
the standard deviation over frames of each clip's whole level in dB, averaged over clips (how
much its loudness moves). Files are read at --rate (mono, resampled to it if they are not).
"""

import argparse
import json
import os
import sys

import numpy as np
from scipy import signal

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data.audio_files import decode_with_soundfile, find_audio_files  # noqa: E402

FRAME, HOP = 2048, 512


def frame_powers(clip, rate):
    """STFT power of a float [time] clip, [bins, frames], whole frames only (no padded edge
    frames, which would read as loudness moving)."""
    return np.abs(signal.stft(clip, rate, nperseg=FRAME, noverlap=FRAME - HOP, boundary=None,
                              padded=False)[2]) ** 2


def band_levels(powers, rate, edges):
    """{"LOW-HIGH": {"level_db", "frame_std_db"}} for each band of `edges` (Hz, ascending) over
    `powers`, a list of `frame_powers` at `rate`, one per clip."""
    power = np.concatenate(powers, axis=-1)  # [bins, frames of every clip]
    bins = np.fft.rfftfreq(FRAME, 1 / rate)
    total = power.sum(axis=0) + 1e-20
    levels = {}
    for low, high in zip(edges[:-1], edges[1:]):
        share = power[(bins >= low) & (bins < high)].sum(axis=0) / total  # [frames]
        frame_db = 10 * np.log10(share + 1e-12)
        levels[f"{low}-{high}"] = {
            "level_db": round(float(10 * np.log10(share.mean() + 1e-12)), 2),
            "frame_std_db": round(float(frame_db.std()), 2)}
    return levels


def loudness_std(powers):
    """Mean over clips (`powers`, a list of `frame_powers`) of the std over frames of each
    clip's total frame power in dB."""
    return round(float(np.mean([np.std(10 * np.log10(power.sum(axis=0) + 1e-20))
                                for power in powers])), 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--rate", type=int, default=22050)
    parser.add_argument("--edges", default="0,1225,3675,11025",
                        help="band edges in Hz, ascending, the last at most --rate / 2")
    args = parser.parse_args()
    edges = [int(edge) for edge in args.edges.split(",")]
    if edges != sorted(edges) or edges[-1] > args.rate / 2:
        parser.error(f"--edges must ascend to at most --rate / 2 ({args.rate / 2:g})")
    for folder in args.folders:
        paths = sorted(find_audio_files(folder))
        if not paths:
            sys.exit(f"error: {folder} holds no audio files")
        powers = [frame_powers(decode_with_soundfile(path, args.rate).astype(np.float64),
                               args.rate) for path in paths]
        print(json.dumps({"folder": folder, "clips": len(powers),
                          "bands": band_levels(powers, args.rate, edges),
                          "loudness_std_db": loudness_std(powers)}))


if __name__ == "__main__":
    main()
