"""Audio in, clips out: the tf.data pipeline (see `data.pipeline`)."""

import os

# Quiets part of TensorFlow's C++ start-up chatter (CPU feature notes) that buries our own
# messages; users who want it can still set the variable themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from data.pipeline import DataError, PreparedData, prepare, train_dataset, val_dataset  # noqa: E402,F401


def define_flags(flag_values=flags.FLAGS):
    """Defines `--data_dir` and `--cache_dir`, shared by every command that reads audio."""
    flags.DEFINE_string("data_dir", None, "Folder searched recursively for .wav .au .flac .ogg "
                        ".mp3 files; leave out to use the built-in synthetic tones.",
                        flag_values=flag_values)
    flags.DEFINE_string("cache_dir", None, "Where preprocessed clips are cached (default "
                        "$XDG_CACHE_HOME/music-diffwave or ~/.cache/music-diffwave).",
                        flag_values=flag_values)
