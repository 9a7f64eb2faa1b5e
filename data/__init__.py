"""Audio in, clips out: the tf.data pipeline (see `data.pipeline`)."""

import os


def _import_tensorflow_quietly():
    """Imports TensorFlow and finds its devices with file descriptor 2 sent to /dev/null.

    TensorFlow 2.21 prints start-up lines from C++ (oneDNN, CUDA probing) that
    TF_CPP_MIN_LOG_LEVEL no longer silences; they would bury our one-line messages. Level 3
    also hides C++ error lines such as oneDNN's "supports DT_STRING only on platforms with
    AVX-512" on every audio summary (failures reach Python as exceptions anyway).
    TF_CPP_MIN_LOG_LEVEL=0 shows them all again.
    """
    if os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3") == "0":
        import tensorflow  # noqa: F401
        return
    import logging  # TensorFlow's Python-side INFO lines too (one per checkpoint write)
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    # Parts of TensorFlow log through absl's logger, which also carries our own INFO lines.
    logging.getLogger("absl").addFilter(
        lambda record: record.levelno >= logging.WARNING
        or f"{os.sep}tensorflow{os.sep}" not in record.pathname)
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import tensorflow
        tensorflow.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


_import_tensorflow_quietly()

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
