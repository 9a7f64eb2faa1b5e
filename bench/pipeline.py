"""Preprocessing throughput with a cold cache; prints one JSON line.

  python bench/pipeline.py [--data_dir=DIR] [--copies=10] [--preset=base]

Without --data_dir it times `--copies` copies of ../shared/audio/music (24 GTZAN-style 10 s,
22050 Hz, 16-bit WAV files). `realtime_factor` is seconds of input audio preprocessed (decoded,
low-passed, decimated, split, normalised and written to the cache) per wall-clock second.
Target: >= 500 per core.
"""

import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

import cli  # noqa: E402

cli.quiet_tensorflow()

import data  # noqa: E402
from data import audio_files  # noqa: E402
import params as params_lib  # noqa: E402

SHARED_MUSIC = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "audio", "music")
flags.DEFINE_string("data_dir", None, "Folder to time (default: copies of ../shared music).")
flags.DEFINE_integer("copies", 10, "Copies of ../shared/audio/music when --data_dir is unset.")
flags.DEFINE_string("preset", "base", "Params preset.")
FLAGS = flags.FLAGS


def main(_):
    params = params_lib.preset(FLAGS.preset)
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = FLAGS.data_dir
        if data_dir is None:
            data_dir = os.path.join(scratch, "music")
            for copy in range(FLAGS.copies):
                shutil.copytree(SHARED_MUSIC, os.path.join(data_dir, f"copy{copy:03d}"))
        # Warm-up on one file so TensorFlow's one-off start-up is not timed.
        warm = os.path.join(scratch, "warm")
        os.makedirs(warm)
        shutil.copy(audio_files.find_audio_files(data_dir)[0], warm)
        data.prepare(params, warm, os.path.join(scratch, "warm_cache"))

        start = time.perf_counter()
        manifest = data.prepare(params, data_dir, os.path.join(scratch, "cache")).manifest
        seconds = time.perf_counter() - start
    cores = len(os.sched_getaffinity(0))
    realtime = manifest["input_seconds"] / seconds
    print(json.dumps({
        "realtime_factor": round(realtime, 1),
        "realtime_factor_per_core": round(realtime / cores, 1),
        "files_per_s": round(manifest["files_found"] / seconds, 1),
        "cores": cores,
        "files": manifest["files_found"],
        "audio_seconds": manifest["input_seconds"],
        "wall_seconds": round(seconds, 3),
        "target_per_core": 500,
    }))


if __name__ == "__main__":
    app.run(main)
