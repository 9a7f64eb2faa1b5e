import keras
import numpy as np
import pytest
import tensorflow as tf

import params as params_lib
from network import DiffWave
from network.diffwave import ResidualLayer


@pytest.fixture(scope="module")
def tiny():
    return params_lib.preset("tiny")


def test_dilations_cycle(tiny):
    model = DiffWave(params_lib.preset("base"))
    assert model.dilations[:11] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1]
    assert model.receptive_field == 1 + 2 * 3 * 1023
    assert DiffWave(tiny).dilations == [1, 2, 4, 1, 2, 4]


def test_untrained_output_is_zero_and_any_length_works(tiny):
    model = DiffWave(tiny).build_for()
    for length in (1, 37, 1000):
        out = model({"audio": tf.random.normal([2, length, 1]),
                     "steps": tf.constant([3.0, 40.0])})
        assert out.shape == (2, length, 1)
        assert np.all(out.numpy() == 0.0)


def test_receptive_field_matches_impulse_response(tiny):
    model = DiffWave(tiny).build_for()
    weights = model.output_projection.get_weights()
    model.output_projection.set_weights([np.ones_like(weights[0]), weights[1]])
    audio = tf.random.normal([1, 201, 1], seed=1)
    with tf.GradientTape() as tape:
        tape.watch(audio)
        out = model({"audio": audio, "steps": tf.constant([5.0])})[0, 100, 0]
    influence = np.nonzero(tape.gradient(out, audio).numpy()[0, :, 0])[0]
    assert influence.max() - influence.min() + 1 == model.receptive_field
    assert influence.min() == 100 - model.receptive_field // 2


@pytest.mark.parametrize("changes", [{}, {"residual_channels": 24}, {"residual_layers": 4},
                                     {"embedding_channels": 32}])
def test_parameter_count_is_the_papers_architecture(tiny, changes):
    """Counted from the paper's description: a 128-sinusoid step embedding through two Dense
    layers of E; a 1x1 input conv to C; per layer a Dense E -> C step projection, tanh and
    sigmoid convs C -> C of kernel 3, residual and skip 1x1 convs C -> C; a 1x1 skip conv and a
    1x1 output conv to 1 channel. Every weight has a bias."""
    params = params_lib.preset("tiny", **changes)
    c, e, layers = params.residual_channels, params.embedding_channels, params.residual_layers
    embedding = (128 * e + e) + (e * e + e)
    per_layer = (e * c + c) + 2 * (3 * c * c + c) + 2 * (c * c + c)
    expected = embedding + (c + c) + layers * per_layer + (c * c + c) + (c + 1)
    assert DiffWave(params).build_for().count_params() == expected


def test_residual_layer_matches_a_numpy_reference():
    """The paper's layer written out in numpy with one 2C-channel dilated conv whose output is
    split into tanh and sigmoid halves, and one 1x1 conv split into residual and skip. The
    layer carries its residual input x as stream = x / scale; its next stream times
    scale / sqrt 2 must be the paper's (x + residual) / sqrt 2."""
    channels, dilation, time, scale = 4, 2, 11, 0.3
    layer = ResidualLayer(channels, dilation)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, time, channels)).astype(np.float32)
    embedding = rng.normal(size=(1, 6)).astype(np.float32)
    layer(tf.constant(x), tf.constant(embedding))
    for weight in layer.weights:
        weight.assign(rng.normal(size=weight.shape).astype(np.float32) * 0.5)
    stream, skip = [out.numpy()[0] for out in layer(tf.constant(x / scale),
                                                    tf.constant(embedding), scale=scale)]

    dense = layer.step_projection
    y = x[0] + embedding @ dense.kernel.numpy() + dense.bias.numpy()
    kernel = np.concatenate([layer.filter_conv.kernel.numpy(), layer.gate_conv.kernel.numpy()], 2)
    bias = np.concatenate([layer.filter_conv.bias.numpy(), layer.gate_conv.bias.numpy()])
    padded = np.pad(y, [(dilation, dilation), (0, 0)])
    conv = bias + sum(padded[tap * dilation:tap * dilation + time] @ kernel[tap] for tap in range(3))
    gated = np.tanh(conv[:, :channels]) / (1 + np.exp(-conv[:, channels:]))
    projection = np.concatenate([layer.residual_projection.kernel.numpy()[0],
                                 layer.skip_projection.kernel.numpy()[0]], 1)
    out = gated @ projection + np.concatenate([layer.residual_projection.bias.numpy(),
                                               layer.skip_projection.bias.numpy()])
    expected = (x[0] + out[:, :channels]) / np.sqrt(2)
    np.testing.assert_allclose(stream * scale / np.sqrt(2), expected, atol=1e-5)
    np.testing.assert_allclose(skip, out[:, channels:], atol=1e-5)


def test_mixed_bfloat16_network_returns_float32_close_to_float32(tiny):
    reference = DiffWave(tiny).build_for()
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = DiffWave(tiny).build_for()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert mixed.residual_0.filter_conv.compute_dtype == "bfloat16"
    rng = np.random.default_rng(1)
    for weight in reference.weights:
        weight.assign(rng.normal(size=weight.shape).astype(np.float32) * 0.3)
    mixed.set_weights(reference.get_weights())
    assert all(weight.dtype == "float32" for weight in mixed.weights)
    audio, steps = tf.random.normal([2, 500, 1], seed=2), tf.constant([3.0, 40.0])
    expected, got = reference({"audio": audio, "steps": steps}), mixed(
        {"audio": audio, "steps": steps})
    assert got.dtype == tf.float32
    error = np.linalg.norm(got.numpy() - expected.numpy()) / np.linalg.norm(expected.numpy())
    # bfloat16 keeps 8 bits of mantissa; these random weights amplify its rounding to ~6 %.
    assert 0 < error < 0.1


@pytest.mark.parametrize("pattern", ["doubling", "odd"])
@pytest.mark.parametrize("length", [64, 37, 1])  # a multiple of every doubling dilation, and not
def test_folded_dilated_convolutions_match_direct_ones(length, pattern):
    """The folded network (what trains on CPUs whose stock kernels cannot differentiate a
    dilated convolution) gives the direct one's output and gradients. The direct gradients
    come from XLA, which computes them on every CPU. In float64, so that summation order, which
    differs between the two, stays far below the tolerance."""
    params = params_lib.preset("tiny", residual_layers=4, dilation_cycle=4,  # dilations to 8
                               dilation_pattern=pattern)                 # or 9
    keras.mixed_precision.set_dtype_policy("float64")
    try:
        direct = DiffWave(params, dilated_conv="direct").build_for()
        folded = DiffWave(params, dilated_conv="folded").build_for()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    rng = np.random.default_rng(3)
    for weight in direct.weights:
        weight.assign(rng.normal(size=weight.shape) * 0.3)
    folded.set_weights(direct.get_weights())
    audio = tf.random.normal([2, length, 1], seed=4, dtype=tf.float64)
    steps = tf.constant([3.5, 40.0])

    def loss_and_gradients(model):
        with tf.GradientTape() as tape:
            tape.watch(audio)
            out = model({"audio": audio, "steps": steps})
            loss = tf.reduce_sum(out * tf.sin(tf.range(length, dtype=tf.float64))[:, None])
        return out, tape.gradient(loss, [audio] + model.trainable_variables)

    expected_out, expected = tf.function(lambda: loss_and_gradients(direct), jit_compile=True)()
    out, got = loss_and_gradients(folded)
    np.testing.assert_allclose(out.numpy(), expected_out.numpy(), rtol=1e-5, atol=1e-5)
    assert np.abs(expected_out.numpy()).max() > 0.1  # the weights make the output non-trivial
    assert len(got) == len(expected)
    for gradient, reference in zip(got, expected):
        if reference is None:  # the last layer's unused residual projection
            assert gradient is None
            continue
        scale = max(1.0, np.abs(reference.numpy()).max())
        np.testing.assert_allclose(gradient.numpy() / scale, reference.numpy() / scale,
                                   atol=1e-5)


def test_unknown_dilated_conv_is_refused(tiny):
    with pytest.raises(ValueError, match="dilated_conv"):
        DiffWave(tiny, dilated_conv="strided")


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_fractional_steps_and_quiet_inputs_reach_the_network_unrounded(tiny, precision):
    """Keras casts a layer's inputs to its compute dtype: bfloat16 would round step 12.345 to
    12.375 and float16 step 130.7 to 130.75, and lose an x_t detail of 0.01 at |x| = 0.5.
    Under every precision the step embedding and the input projection must match float32."""
    reference = DiffWave(tiny).build_for()
    keras.mixed_precision.set_dtype_policy(precision)
    try:
        model = DiffWave(tiny).build_for()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    rng = np.random.default_rng(5)
    for weight in reference.weights:
        weight.assign(rng.normal(size=weight.shape).astype(np.float32) * 0.3)
    model.set_weights(reference.get_weights())
    steps = tf.constant([12.345, 12.375, 130.7, 130.75])
    np.testing.assert_allclose(model.embedding(steps).numpy(),
                               reference.embedding(steps).numpy(), rtol=1e-6, atol=1e-6)
    audio = 0.5 + 0.01 * tf.random.normal([4, 300, 1], seed=6)
    np.testing.assert_allclose(model.input_projection(audio).numpy(),
                               reference.input_projection(audio).numpy(), rtol=1e-6, atol=1e-6)
    # Through the whole model: steps a rounding step apart give different predictions.
    out = model({"audio": tf.concat([audio[:1]] * 4, 0), "steps": steps}).numpy()
    for a, b in ((0, 1), (2, 3)):
        assert np.abs(out[a] - out[b]).max() > 1e-4 * np.abs(out[a]).max()


def test_bfloat16_without_hardware_support_is_said_to_be_slow(monkeypatch):
    from network import runtime
    monkeypatch.setattr(runtime, "cpu_info", lambda: {"model": "AMD EPYC",
                                                      "flags": {"avx2", "fma"}})
    warning = runtime.precision_warning("mixed_bfloat16")
    assert "AMD EPYC has neither AVX512_BF16 nor AMX" in warning and "slower" in warning
    assert runtime.precision_warning("float32") is None
    monkeypatch.setattr(runtime, "cpu_info", lambda: {"model": "Xeon",
                                                      "flags": {"avx512_bf16", "amx_bf16"}})
    assert runtime.precision_warning("mixed_bfloat16") is None


@pytest.mark.parametrize("upsample_from", [0, 2450])
def test_recomputed_layers_give_the_same_loss_and_gradients(upsample_from):
    """--recompute keeps only each layer's input and recomputes the layer in the backward pass:
    the numbers must not change, for a model from noise and for an upsampler (whose layers
    also take the condition). The unused residual projection of the last layer gets no
    gradient without recomputation and a zero one with it."""
    params = params_lib.preset("tiny", upsample_from=upsample_from)
    plain = DiffWave(params, dilated_conv="folded").build_for()  # trains on any kernels
    recomputed = DiffWave(params, dilated_conv="folded", recompute=True).build_for()
    rng = np.random.default_rng(0)
    for weight in plain.weights:
        weight.assign(rng.normal(size=weight.shape) * 0.3)
    recomputed.set_weights(plain.get_weights())
    inputs = {"audio": tf.random.normal([2, 300, 1], seed=1), "steps": tf.constant([3.0, 40.0])}
    if upsample_from:
        inputs.update(condition=tf.random.normal([2, 300, 1], seed=2),
                      condition_level=tf.constant([0.0, 0.05]))

    @tf.function
    def loss_and_gradients(model):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(inputs, training=True) ** 2)
        return loss, tape.gradient(loss, model.trainable_variables)

    loss, expected = loss_and_gradients(plain)
    recomputed_loss, got = loss_and_gradients(recomputed)
    assert float(loss) > 1 and float(recomputed_loss) == pytest.approx(float(loss), rel=1e-6)
    for gradient, reference in zip(got, expected):
        if reference is None:
            assert not np.any(gradient.numpy())
            continue
        scale = max(1.0, np.abs(reference.numpy()).max())
        np.testing.assert_allclose(gradient.numpy() / scale, reference.numpy() / scale,
                                   atol=1e-5)


def test_the_odd_dilation_pattern_has_no_multiple_of_4_and_old_models_keep_doubling():
    from network.diffwave import dilations
    doubling = params_lib.preset("cpu")
    odd = params_lib.preset("cpu", dilation_pattern="odd")
    assert dilations(doubling) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert dilations(odd) == [1, 3, 5, 9, 17, 33, 65, 129, 257, 513]
    assert not [d for d in dilations(odd) if d % 4 == 0]
    # Nearly the same reach: receptive fields 2047 and 2065 samples.
    assert DiffWave(odd).receptive_field - DiffWave(doubling).receptive_field == 18
    # A params.json written before the field existed loads as doubling.
    values = doubling.to_dict()
    del values["dilation_pattern"]
    assert params_lib.Params.from_dict(values).dilation_pattern == "doubling"
