"""The DiffWave network (Kong et al. 2020) as Keras 3 layers."""

from network.diffwave import DiffWave  # noqa: F401
from network import checkpoints  # noqa: F401,E402
