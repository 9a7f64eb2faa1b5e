import numpy as np
import pytest
import tensorflow as tf

import params as params_lib
from network import DiffWave


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
        out = model((tf.random.normal([2, length, 1]), tf.constant([3.0, 40.0])))
        assert out.shape == (2, length, 1)
        assert np.all(out.numpy() == 0.0)


def test_receptive_field_matches_impulse_response(tiny):
    model = DiffWave(tiny).build_for()
    weights = model.output_projection.get_weights()
    model.output_projection.set_weights([np.ones_like(weights[0]), weights[1]])
    audio = tf.random.normal([1, 201, 1], seed=1)
    with tf.GradientTape() as tape:
        tape.watch(audio)
        out = model((audio, tf.constant([5.0])))[0, 100, 0]
    influence = np.nonzero(tape.gradient(out, audio).numpy()[0, :, 0])[0]
    assert influence.max() - influence.min() + 1 == model.receptive_field
    assert influence.min() == 100 - model.receptive_field // 2


def test_parameter_count_grows_with_channels(tiny):
    small = DiffWave(tiny).build_for().count_params()
    wider = DiffWave(params_lib.preset("tiny", residual_channels=32)).build_for().count_params()
    assert wider > 2 * small
