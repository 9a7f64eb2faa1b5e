"""Prints what the pipeline makes of a data folder, as one JSON object.

  python -m data.inspect --data_dir=DIR [--preset=tiny|base] [--cache_dir=DIR]

Builds the clip cache if needed (so a later `train.py` with the same params starts at once).
Skipped files are listed with their reasons under `files_skipped`.
"""

import json
import sys

from absl import app, flags

import data
import params as params_lib

data.define_flags()
params_lib.define_flags()
flags.adopt_module_key_flags(data)  # --help lists them too
flags.adopt_module_key_flags(params_lib)
FLAGS = flags.FLAGS


def main(_):
    try:
        params = params_lib.from_flags(FLAGS)
        prepared = data.prepare(params, FLAGS.data_dir, FLAGS.cache_dir)
    except params_lib.UserError as error:
        sys.exit(f"error: {error}")
    print(json.dumps({**prepared.manifest, "cache": prepared.folder}, indent=2))


if __name__ == "__main__":
    app.run(main, flags_parser=params_lib.parse_flags)
