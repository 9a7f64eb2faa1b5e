"""The DiffWave network (Kong et al. 2020) as Keras 3 layers.

Its modules load on first use, so that `network.kernels` can set TensorFlow's kernels before
anything imports TensorFlow.
"""

import importlib


def __getattr__(name):
    if name == "DiffWave":
        return importlib.import_module("network.diffwave").DiffWave
    raise AttributeError(f"module 'network' has no attribute {name!r}")
