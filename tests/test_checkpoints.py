"""Saving and loading networks: every weight round-trips, mismatches are refused."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

import params as params_lib
from network import DiffWave, checkpoints
from params import UserError


def save(tmp_path, params, seed=0):
    tf.random.set_seed(seed)
    model, ema = DiffWave(params).build_for(), DiffWave(params).build_for()
    for weight in ema.weights:  # distinct values, so a weight left unrestored shows
        weight.assign(tf.random.normal(weight.shape))
    prefix = tf.train.Checkpoint(model=model, ema=ema).save(str(tmp_path / "ckpt"))
    return prefix, model, ema


def test_every_weight_of_both_networks_round_trips(tmp_path, tiny_params):
    prefix, model, ema = save(tmp_path, tiny_params)
    for role, original in (("ema", ema), ("model", model)):
        loaded = checkpoints.load_model(tiny_params, prefix, ema=role == "ema")
        assert len(loaded.weights) == len(original.weights)
        for mine, theirs in zip(loaded.weights, original.weights):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)


@pytest.mark.parametrize("change", [{"residual_layers": 3}, {"residual_channels": 8},
                                    {"embedding_channels": 32}])
def test_other_architecture_is_refused(tmp_path, tiny_params, change):
    prefix, _, _ = save(tmp_path, tiny_params)
    other = dataclasses.replace(tiny_params, **change)
    with pytest.raises(UserError, match="does not match params.json"):
        checkpoints.load_model(other, prefix)


def test_truncated_checkpoint_is_refused(tmp_path, tiny_params):
    prefix, _, _ = save(tmp_path, tiny_params)
    [data_file] = tmp_path.glob("ckpt-1.data-*")
    data_file.write_bytes(data_file.read_bytes()[:100])
    with pytest.raises(UserError, match="ckpt-1"):
        checkpoints.load_model(tiny_params, prefix)


def test_missing_pieces_of_a_model_dir_are_named(tmp_path, tiny_params):
    with pytest.raises(UserError, match="not a folder"):
        checkpoints.load_params(str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="no params.json"):
        checkpoints.load_params(str(tmp_path))
    tiny_params.save(str(tmp_path / "params.json"))
    assert checkpoints.load_params(str(tmp_path)) == tiny_params
    with pytest.raises(UserError, match="no checkpoint yet"):
        checkpoints.find_checkpoint(str(tmp_path))
    with pytest.raises(UserError, match="--checkpoint=ckpt-9 not found"):
        checkpoints.find_checkpoint(str(tmp_path), "ckpt-9")


def test_latest_or_named_checkpoint_is_found(tmp_path, tiny_params):
    model = DiffWave(tiny_params).build_for()
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model),
                                         str(tmp_path / "checkpoints"), max_to_keep=3)
    for step in (10, 20):
        manager.save(checkpoint_number=step)
    assert checkpoints.find_checkpoint(str(tmp_path)).endswith("ckpt-20")
    assert checkpoints.find_checkpoint(str(tmp_path), "ckpt-10").endswith("ckpt-10")
