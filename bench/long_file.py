"""Peak memory of preprocessing one long file; prints one JSON line.

  python bench/long_file.py [--minutes=60] [--rate=44100] [--channels=2]

Writes one 16-bit WAV of --minutes of a tone with noise into a temporary folder and runs
`python -m data.inspect` on it (decode, resample, low-pass, decimate, clips, cache) in a
subprocess, whose peak resident memory is reported. Files longer than 90 s are decoded in
pieces of about a minute. Target: peak_rss_mb < 1000 for one hour, whatever its format.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile
from absl import app, flags

from common import ROOT, machine

flags.DEFINE_float("minutes", 60.0, "Length of the file.")
flags.DEFINE_integer("rate", 44100, "Its sample rate.")
flags.DEFINE_integer("channels", 2, "Its channels.")
FLAGS = flags.FLAGS


def write_long_wav(path, minutes, rate, channels, block_seconds=60):
    """A tone with noise, written a block at a time (the bench itself stays small)."""
    rng = np.random.default_rng(0)
    with soundfile.SoundFile(path, "w", rate, channels, subtype="PCM_16") as f:
        for start in range(0, round(minutes * 60 * rate), block_seconds * rate):
            time_s = (start + np.arange(min(block_seconds * rate,
                                            round(minutes * 60 * rate) - start))) / rate
            mono = 0.3 * np.sin(2 * np.pi * 220 * time_s) + 0.05 * rng.normal(size=time_s.size)
            f.write(np.repeat(mono[:, None], channels, axis=1).astype(np.float32))


def main(_):
    with tempfile.TemporaryDirectory() as folder:
        music = os.path.join(folder, "music")
        os.makedirs(music)
        write_long_wav(os.path.join(music, "long.wav"), FLAGS.minutes, FLAGS.rate,
                       FLAGS.channels)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "data.inspect", f"--data_dir={music}",
                        f"--cache_dir={folder}/cache", "--preset=base"], cwd=ROOT, check=True,
                       capture_output=True)
        seconds = time.perf_counter() - start
    print(json.dumps({
        "minutes": FLAGS.minutes, "rate": FLAGS.rate, "channels": FLAGS.channels,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "seconds": round(seconds, 1), **machine(), "targets": {"peak_rss_mb": 1000}}))


if __name__ == "__main__":
    app.run(main)
