"""Audio in, clips out: the tf.data pipeline (see `data.pipeline`).

Its names load on first use, so that `python -m data.inspect` can quiet TensorFlow's start-up
before anything imports it.
"""

import importlib

PIPELINE = ("ClipCache", "DataError", "condition_crop", "condition_of", "label_of", "load_audio",
            "prepare", "train_dataset", "training_samples", "val_dataset")


def __getattr__(name):
    if name in PIPELINE:
        return getattr(importlib.import_module("data.pipeline"), name)
    raise AttributeError(f"module 'data' has no attribute {name!r}")
