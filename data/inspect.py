"""Prints what the pipeline makes of a data folder, as one JSON object.

  python -m data.inspect --data_dir=DIR [--preset=tiny|base] [--cache_dir=DIR]

Builds the clip cache if needed (so a later `train.py` with the same params starts at once).
Skipped files are listed with their reasons under `files_skipped`.
"""

import json

from absl import flags

import cli

cli.quiet_tensorflow()

import data  # noqa: E402

FLAGS = flags.FlagValues()
cli.define_data_flags(FLAGS)
cli.define_params_flags(FLAGS)


def inspect():
    clip_cache = data.prepare(cli.params_from_flags(FLAGS), FLAGS.data_dir, FLAGS.cache_dir)
    print(json.dumps({**clip_cache.manifest, "cache": clip_cache.folder}, indent=2))


def main(argv):
    """The command with argv (`[program, flags...]`) in this process; returns its exit status."""
    return cli.main(inspect, FLAGS, argv,
                    "interrupted; a half-built cache is removed on the next run")


if __name__ == "__main__":
    cli.run(main)
