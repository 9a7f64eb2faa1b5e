"""DiffWave (Kong et al. 2020), read top to bottom as the paper's figure 2.

  audio [batch, time, 1] -> 1x1 conv, ReLU -> L residual layers -> sum of skips / sqrt(L)
  -> ReLU -> 1x1 conv, ReLU -> 1x1 conv (zero-initialised) -> predicted noise [batch, time, 1]

Unconditional, or conditioned on a label (genre, class) as a global condition: a learned label
embedding added to the step embedding that every residual layer receives. An upsampler (a
cascade's later stage, as NU-Wave) is also conditioned on lower-rate audio, interpolated to its
rate: a local condition that enters every residual layer through 1x1 convolutions added before
the gate (DiffWave's local conditioner), with the condition's own noise level embedded beside
the step (conditioning augmentation).

Every layer is a convolution along time, so the network accepts any length.
"""

import functools
import math

import keras
import numpy as np
import tensorflow as tf

from network.conv_kernels import convolve, fold_time, resolve_dilated_conv

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
    """Diffusion step -> [batch, embedding_channels]: sinusoids, then two Dense + swish.

    float32 throughout, under any precision: the steps must reach the sinusoids unrounded
    (bfloat16 would turn step 130.7 into 131), and this runs once per clip, not per sample.
    """

    def __init__(self, channels, dtype="float32", **kwargs):
        super().__init__(dtype=dtype, **kwargs)
        self.first = keras.layers.Dense(channels, activation="swish", dtype=dtype)
        self.second = keras.layers.Dense(channels, activation="swish", dtype=dtype)

    def call(self, steps):
        return self.second(self.first(step_sinusoids(steps)))


class ResidualLayer(keras.layers.Layer):
    """One gated, dilated residual layer.

    y = x + projected step embedding; the paper's dilated conv (kernel 3) to 2C channels split
    into a tanh half and a sigmoid half, tanh(conv_f(y)) * sigmoid(conv_g(y)); its 1x1 conv to
    2C split into residual and skip halves. Gives ((x + residual) / sqrt 2, skip). With a local
    condition c (`conditioned`), tanh(conv_f(y) + cond_f(c)) * sigmoid(conv_g(y) + cond_g(c)),
    cond_f and cond_g 1x1 convolutions.

    Each half is its own C-channel convolution: the same arithmetic as slicing a 2C output,
    without the slicing copies, and each fuses with its bias and activation (unconditioned: the
    condition must be added before the activation).
    """

    def __init__(self, channels, dilation, folded=False, conditioned=False, **kwargs):
        super().__init__(**kwargs)
        self.fold = folded and dilation > 1
        self.dilation = dilation
        self.conditioned = conditioned
        self.step_projection = keras.layers.Dense(channels)
        conv = lambda activation: keras.layers.Conv1D(  # noqa: E731
            channels, 3, padding="same", dilation_rate=dilation,
            activation=None if conditioned else activation)
        self.filter_conv, self.gate_conv = conv("tanh"), conv("sigmoid")
        self.residual_projection = keras.layers.Conv1D(channels, 1)
        self.skip_projection = keras.layers.Conv1D(channels, 1)
        if conditioned:
            self.condition_filter = keras.layers.Conv1D(channels, 1)
            self.condition_gate = keras.layers.Conv1D(channels, 1)

    def build(self, stream_shape, embedding_shape, condition_shape=None):
        self.step_projection.build(embedding_shape)
        for conv in (self.filter_conv, self.gate_conv, self.residual_projection,
                     self.skip_projection):
            conv.build(stream_shape)
        if self.conditioned:
            self.condition_filter.build(condition_shape)
            self.condition_gate.build(condition_shape)

    def gate(self, y, scale, condition):
        """tanh(f) * sigmoid(g) of y (folded or not), the condition added to f and g."""
        if condition is None:
            return (convolve(self.filter_conv, y, x_scale=scale)
                    * convolve(self.gate_conv, y, x_scale=scale))
        condition_filter = convolve(self.condition_filter, condition)
        condition_gate = convolve(self.condition_gate, condition)
        if self.fold:
            condition_filter = fold_time(condition_filter, self.dilation)[0]
            condition_gate = fold_time(condition_gate, self.dilation)[0]
        return (tf.tanh(convolve(self.filter_conv, y, x_scale=scale) + condition_filter)
                * tf.sigmoid(convolve(self.gate_conv, y, x_scale=scale) + condition_gate))

    def call(self, stream, embedding, condition=None, scale=1.0):
        """One layer on the residual input x carried as stream = x / scale.

        The paper's (x + residual) / sqrt 2 is (scale / sqrt 2) * (stream + residual / scale):
        the returned stream goes on with scale / sqrt 2, and the scales fold into the kernels,
        so the only per-sample work besides the convolutions is two adds and the gate product.

        Args:
          stream: [batch, time, C]; embedding: [batch, E]; condition: None, or the local
            condition's features [batch, time, C]; scale: a Python float.
        Returns:
          (next stream, skip), both [batch, time, C].
        """
        y = stream + self.step_projection(embedding)[:, None, :] / scale  # (x + e) / scale
        if self.fold:
            y, unfold = fold_time(y, self.dilation)
        gated = self.gate(y, scale, condition)
        if self.fold:
            gated = unfold(gated)
        residual = convolve(self.residual_projection, gated, out_scale=1 / scale)
        return stream + residual, convolve(self.skip_projection, gated)


def dilations(params):
    """Each residual layer's dilation, [residual_layers] ints (params.dilation_pattern)."""
    powers = [i % params.dilation_cycle for i in range(params.residual_layers)]
    if params.dilation_pattern == "odd":
        return [1 if k == 0 else 2 ** k + 1 for k in powers]
    return [2 ** k for k in powers]


class DiffWave(keras.Model):
    """Predicts the noise in x_t. Call as `model({"audio": x_t, "steps": t})`, adding
    `"labels"` for a labelled model.

    Inputs (a dict; per-sample entries are [batch, time, channels], per-example ones [batch]):
      audio: float32 [batch, time, 1], the noisy signal x_t.
      steps: float32 [batch], the diffusion step t (0-based; fractional allowed).
      labels: int32 [batch], indices into params.label_names, or `no_label` (the default when
        absent): only for a model with label_names.
      condition: float32 [batch, time, 1], an upsampler's lower-rate audio interpolated to its
        rate (`data.pipeline.condition_of`): only, and always, for an upsampler.
      condition_level: float32 [batch], how far the condition was noised by the forward
        process, as a fraction of the noise schedule (0, clean, when absent): upsamplers only.
    Returns:
      float32 [batch, time, 1], the predicted noise.

    `dilated_conv` picks how dilated convolutions run: "direct" (tf.nn.conv1d), "folded" (see
    `fold_time`: trains on CPUs whose kernels cannot differentiate direct ones), or "auto"
    (`resolve_dilated_conv`: direct where it trains). Same weights, same results.
    `recompute`: in training, keep only each residual layer's input for the backward pass and
    compute the rest of the layer again there (keras.remat): less memory, more time.
    """

    def __init__(self, params, dilated_conv="auto", recompute=False, **kwargs):
        super().__init__(**kwargs)
        dilated_conv, _ = resolve_dilated_conv(dilated_conv)
        self.recompute = recompute
        # Layers kept out of mixed precision run in float32 (float64 under a float64 policy).
        self.exact_dtype = ("float64" if keras.mixed_precision.dtype_policy().compute_dtype
                            == "float64" else "float32")
        channels = params.residual_channels
        self.dilations = dilations(params)
        self.embedding = StepEmbedding(params.embedding_channels, dtype=self.exact_dtype)
        # The last row is "no label": label dropout trains it, so the same network predicts
        # the unconditional noise that classifier-free guidance needs.
        self.no_label = len(params.label_names)
        if params.label_names:
            self.label_embedding = keras.layers.Embedding(
                self.no_label + 1, params.embedding_channels, dtype=self.exact_dtype)
        self.upsampler = bool(params.upsample_from)
        if self.upsampler:
            self.noise_steps = params.noise_steps
            self.condition_level_embedding = StepEmbedding(params.embedding_channels,
                                                           dtype=self.exact_dtype)
            # The condition's features, seen by every layer through its own 1x1 convolutions.
            self.condition_projection = keras.layers.Conv1D(channels, 3, padding="same",
                                                            activation="relu")
        # float32: near t = 0, x_t differs from x_0 by noise far below bfloat16's rounding.
        self.input_projection = keras.layers.Conv1D(channels, 1, activation="relu",
                                                    dtype=self.exact_dtype)
        # One attribute per layer, not a list: tf.train.Checkpoint only follows attributes.
        for i, dilation in enumerate(self.dilations):
            setattr(self, f"residual_{i}", ResidualLayer(
                channels, dilation, folded=dilated_conv == "folded", conditioned=self.upsampler,
                name=f"residual_{i}"))
        self.skip_projection = keras.layers.Conv1D(channels, 1, activation="relu")
        # Zero output: the untrained model predicts no noise, a stable start (as in the paper).
        # float32 output under mixed precision: the diffusion math and the loss stay float32.
        self.output_projection = keras.layers.Conv1D(1, 1, kernel_initializer="zeros",
                                                     dtype=self.exact_dtype)

    @property
    def input_dtype(self):
        """Inputs stay float32 under mixed precision (Keras would cast the steps to the
        compute dtype); the float32 layers above take them as they are."""
        return self.exact_dtype

    @property
    def residual_layers(self):
        return [getattr(self, f"residual_{i}") for i in range(len(self.dilations))]

    @property
    def receptive_field(self):
        """Input samples that influence one output sample (kernel 3: 2 * dilation per layer,
        and 2 more through an upsampler's condition projection)."""
        return 1 + 2 * sum(self.dilations) + (2 if self.upsampler else 0)

    def call(self, inputs, training=False):
        audio, steps = inputs["audio"], inputs["steps"]
        embedding = self.embedding(steps)
        if self.no_label:
            labels = inputs.get("labels")
            if labels is None:
                labels = tf.fill(tf.shape(steps), self.no_label)
            embedding = embedding + self.label_embedding(labels)
        condition = None
        if self.upsampler:
            level = inputs.get("condition_level")
            if level is None:
                level = tf.zeros(tf.shape(steps))
            embedding = embedding + self.condition_level_embedding(
                tf.cast(level, tf.float32) * self.noise_steps)
            condition = self.condition_projection(inputs["condition"])
        # The residual input x is carried as stream = x / scale (see ResidualLayer.call);
        # renormalising now and then keeps float16 streams far from overflow.
        stream, scale = self.input_projection(audio), 1.0
        skips = 0.0
        for layer in self.residual_layers:
            if scale < 1 / 16:
                stream, scale = stream * scale, 1.0
            run_layer = functools.partial(layer, scale=scale)
            if self.recompute and training:
                run_layer = keras.remat(run_layer)
            # keras.remat takes tensors only: no None for an unconditioned layer.
            stream, skip = run_layer(stream, embedding, *([] if condition is None
                                                          else [condition]))
            scale /= math.sqrt(2.0)
            skips = skips + skip
        x = tf.nn.relu(skips / math.sqrt(len(self.residual_layers)))
        return self.output_projection(self.skip_projection(x))

    def flops_per_sample(self):
        """Forward FLOPs per audio sample: 2 per multiply-add of every convolution (the step
        embedding, computed once per clip, is left out)."""
        convs = [self.input_projection, self.skip_projection, self.output_projection]
        if self.upsampler:
            convs.append(self.condition_projection)
        for layer in self.residual_layers:
            convs += [layer.filter_conv, layer.gate_conv, layer.residual_projection,
                      layer.skip_projection]
            if layer.conditioned:
                convs += [layer.condition_filter, layer.condition_gate]
        return sum(2 * int(np.prod(conv.kernel.shape)) for conv in convs)

    def build_for(self, time=64):
        """Creates the weights by calling once on zeros; returns self."""
        inputs = {"audio": tf.zeros([1, time, 1]), "steps": tf.zeros([1])}
        if self.upsampler:
            inputs["condition"] = tf.zeros([1, time, 1])
        self(inputs)
        return self
