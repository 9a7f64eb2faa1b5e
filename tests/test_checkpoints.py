"""Saving and loading networks: every weight round-trips, mismatches are refused."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

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


def saved_steps_10_20_30(tmp_path, params):
    model = DiffWave(params).build_for()
    folder = tmp_path / "checkpoints"
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(folder),
                                         max_to_keep=5)
    for step in (10, 20, 30):
        manager.save(checkpoint_number=step)
    return folder


@pytest.mark.parametrize("index", ["deleted", "empty", "garbage", "names a deleted one"])
def test_a_lost_or_broken_index_file_still_finds_the_newest_complete_checkpoint(
        tmp_path, tiny_params, index):
    folder = saved_steps_10_20_30(tmp_path, tiny_params)
    for path in folder.glob("ckpt-30.data-*"):  # ckpt-30 half deleted: not complete
        path.unlink()
    if index == "deleted":
        (folder / "checkpoint").unlink()
    elif index == "empty":
        (folder / "checkpoint").write_text("")
    elif index == "garbage":
        (folder / "checkpoint").write_bytes(b"\x00\xff not a checkpoint state {{{")
    assert checkpoints.complete_checkpoints(str(folder)) == [str(folder / "ckpt-10"),
                                                            str(folder / "ckpt-20")]
    assert checkpoints.latest_checkpoint(str(folder)).endswith("ckpt-20")
    assert checkpoints.find_checkpoint(str(tmp_path)).endswith("ckpt-20")
    assert "ckpt-20" in checkpoints.repair_index(str(folder))
    assert tf.train.latest_checkpoint(str(folder)).endswith("ckpt-20")
    assert checkpoints.repair_index(str(folder)) is None  # nothing left to repair


def test_generation_loads_the_newest_checkpoint_when_training_deletes_the_one_found(
        tmp_path, tiny_params, monkeypatch):
    """train.py keeps 3 checkpoints: the one generate.py found can vanish before it is read."""
    folder = saved_steps_10_20_30(tmp_path, tiny_params)
    load_model, calls = checkpoints.load_model, []

    def rotated_away(params, checkpoint, ema=True, dilated_conv="direct"):
        calls.append(os.path.basename(checkpoint))
        if len(calls) == 1:  # training deletes it (and moves on) just before it is read
            for path in folder.glob(os.path.basename(checkpoint) + ".*"):
                path.unlink()
        return load_model(params, checkpoint, ema=False)

    monkeypatch.setattr(checkpoints, "load_model", rotated_away)
    model, checkpoint = checkpoints.load_latest(tiny_params, str(tmp_path))
    assert calls == ["ckpt-30", "ckpt-20"] and checkpoint.endswith("ckpt-20")
    assert isinstance(model, DiffWave)
    with pytest.raises(UserError, match="cannot read checkpoint"):  # a named one: no retry
        calls.clear()
        checkpoints.load_latest(tiny_params, str(tmp_path), "ckpt-20")
