"""DiffWave (Kong et al. 2020, unconditional), read top to bottom as the paper's figure 2.

  audio [batch, time, 1] -> 1x1 conv, ReLU -> L residual layers -> sum of skips / sqrt(L)
  -> ReLU -> 1x1 conv, ReLU -> 1x1 conv (zero-initialised) -> predicted noise [batch, time, 1]

Every layer is a convolution along time, so the network accepts any length.
"""

import math

import keras
import numpy as np
import tensorflow as tf

SINUSOID_CHANNELS = 128


def step_sinusoids(steps):
    """Sinusoidal encoding of diffusion steps, interpolated linearly between integer steps.

    The highest frequencies turn by thousands of radians per step, so the encoding of a
    fractional step would be unlike any the network trained on; the fast sampler's fractional
    steps instead get a blend of their two neighbours' encodings (as in DiffWave).

    Args:
      steps: float [batch].
    Returns:
      float32 [batch, 128]: sin(t * 10^(4 i / 63)) for i < 64, then the cosines.
    """
    half = SINUSOID_CHANNELS // 2
    frequencies = tf.constant(10.0 ** (np.arange(half) * 4.0 / (half - 1)), tf.float32)

    def encode(integer_steps):
        angles = integer_steps[:, None] * frequencies[None, :]
        return tf.concat([tf.sin(angles), tf.cos(angles)], axis=1)

    steps = tf.cast(steps, tf.float32)
    low = tf.floor(steps)
    weight = (steps - low)[:, None]
    return (1 - weight) * encode(low) + weight * encode(low + 1)


class StepEmbedding(keras.layers.Layer):
    """Diffusion step -> [batch, embedding_channels]: sinusoids, then two Dense + swish."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.first = keras.layers.Dense(channels, activation="swish")
        self.second = keras.layers.Dense(channels, activation="swish")

    def call(self, steps):
        return self.second(self.first(step_sinusoids(steps)))


class ResidualLayer(keras.layers.Layer):
    """One gated, dilated residual layer.

    x + projected step embedding -> dilated conv (kernel 3) to 2C -> tanh(first C) *
    sigmoid(second C) -> 1x1 conv to 2C -> (residual, skip); returns ((x + residual)/sqrt 2,
    skip).
    """

    def __init__(self, channels, dilation, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.step_projection = keras.layers.Dense(channels)
        self.dilated_conv = keras.layers.Conv1D(2 * channels, 3, padding="same",
                                                dilation_rate=dilation)
        self.output_projection = keras.layers.Conv1D(2 * channels, 1)

    def call(self, x, embedding):
        """x: [batch, time, C]; embedding: [batch, E]. Returns two [batch, time, C]."""
        y = self.dilated_conv(x + self.step_projection(embedding)[:, None, :])
        filter_, gate = y[..., :self.channels], y[..., self.channels:]
        y = self.output_projection(tf.tanh(filter_) * tf.sigmoid(gate))
        residual, skip = y[..., :self.channels], y[..., self.channels:]
        return (x + residual) / math.sqrt(2.0), skip


class DiffWave(keras.Model):
    """Predicts the noise in x_t. Call as `model((audio, steps))`.

    Inputs:
      audio: float32 [batch, time, 1], the noisy signal x_t.
      steps: float32 [batch], the diffusion step t (0-based; fractional allowed).
    Returns:
      float32 [batch, time, 1], the predicted noise.
    """

    def __init__(self, params, **kwargs):
        super().__init__(**kwargs)
        channels = params.residual_channels
        self.dilations = [2 ** (i % params.dilation_cycle) for i in range(params.residual_layers)]
        self.embedding = StepEmbedding(params.embedding_channels)
        self.input_projection = keras.layers.Conv1D(channels, 1, activation="relu")
        # One attribute per layer, not a list: tf.train.Checkpoint only follows attributes.
        for i, dilation in enumerate(self.dilations):
            setattr(self, f"residual_{i}", ResidualLayer(channels, dilation, name=f"residual_{i}"))
        self.skip_projection = keras.layers.Conv1D(channels, 1, activation="relu")
        # Zero output: the untrained model predicts no noise, a stable start (as in the paper).
        self.output_projection = keras.layers.Conv1D(1, 1, kernel_initializer="zeros")

    @property
    def residual_layers(self):
        return [getattr(self, f"residual_{i}") for i in range(len(self.dilations))]

    @property
    def receptive_field(self):
        """Input samples that influence one output sample (kernel 3: 2 * dilation per layer)."""
        return 1 + 2 * sum(self.dilations)

    def call(self, inputs):
        audio, steps = inputs
        embedding = self.embedding(steps)
        x = self.input_projection(audio)
        skips = 0.0
        for layer in self.residual_layers:
            x, skip = layer(x, embedding)
            skips = skips + skip
        x = tf.nn.relu(skips / math.sqrt(len(self.residual_layers)))
        return self.output_projection(self.skip_projection(x))

    def build_for(self, time=64):
        """Creates the weights by calling once on zeros; returns self."""
        self((tf.zeros([1, time, 1]), tf.zeros([1])))
        return self
