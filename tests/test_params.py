import dataclasses
import json
import os

import pytest
from absl import flags

import cli
import params as params_lib
from data.cache import cache_key
from data.pipeline import SYNTHETIC_SOURCE, _data_params
from params import Params, UserError


def test_presets_differ_and_validate():
    tiny, base = params_lib.preset("tiny"), params_lib.preset("base")
    assert tiny.clip_samples < base.clip_samples
    assert base.sample_rate == 7350 == base.input_rate // base.decimation


def test_json_round_trip(tmp_path):
    original = params_lib.preset("tiny", clip_samples=777, target_rms=0.2)
    path = str(tmp_path / "params.json")
    original.save(path)
    assert Params.load(path) == original


@pytest.mark.parametrize("edit, message", [
    (lambda v: v.update(surprise=1), "unknown keys ['surprise']"),
    (lambda v: v.pop("clip_samples"), "missing keys ['clip_samples']"),
    (lambda v: v.update(clip_samples="many"), "clip_samples must be a finite int"),
    (lambda v: v.update(clip_samples=-5), "clip_samples must be > 0"),
])
def test_bad_json_is_refused_with_the_reason(tmp_path, edit, message):
    values = params_lib.preset("tiny").to_dict()
    edit(values)
    path = tmp_path / "params.json"
    path.write_text(json.dumps(values))
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Params.load(str(path))


def test_float_fields_accept_json_integers(tmp_path):
    values = params_lib.preset("tiny").to_dict()
    values["silence_dbfs"] = -40
    path = tmp_path / "params.json"
    path.write_text(json.dumps(values))
    assert Params.load(str(path)).silence_dbfs == -40.0


@pytest.mark.parametrize("overrides, message", [
    ({"decimation": 4}, "not divisible"),
    ({"val_fraction": 1.0}, "val_fraction"),
    ({"batch_size": 0}, "batch_size must be > 0"),
    ({"no_such_field": 1}, "unknown params"),
])
def test_invalid_values_are_refused(overrides, message):
    with pytest.raises(UserError, match=message):
        params_lib.preset("base", **overrides)


def test_unknown_preset():
    with pytest.raises(UserError, match="unknown preset 'huge'"):
        params_lib.preset("huge")


def test_flags_override_preset_fields():
    flag_values = flags.FlagValues()
    cli.define_params_flags(flag_values)
    flag_values(["prog", "--preset=tiny", "--clip_samples=4096", "--target_rms=0.05"])
    params = cli.params_from_flags(flag_values)
    assert params == dataclasses.replace(params_lib.PRESETS["tiny"], clip_samples=4096,
                                         target_rms=0.05)


# A valid value other than the tiny preset's, for fields where +1 or x0.5 would not be.
OTHER_VALUES = {"input_rate": 44100, "decimation": 2, "beta_schedule": "cosine", "loss": "l1",
                "noise_conditioning": "continuous", "label_names": ("blues", "jazz"),
                "synthetic_set": "held_notes", "prediction": "v",
                "dilation_pattern": "odd"}


def other_value(name, value):
    if name in OTHER_VALUES:
        return OTHER_VALUES[name]
    return value + 1 if isinstance(value, int) else value * 0.5


@pytest.mark.parametrize("name", [field.name for field in dataclasses.fields(Params)])
def test_each_fields_group_decides_what_changing_it_does(name):
    """data: keys the clip cache; model and diffusion: a saved model refuses the change;
    train: a resumed run takes it."""
    tiny = params_lib.preset("tiny")
    group = next(f.metadata["group"] for f in dataclasses.fields(Params) if f.name == name)
    assert group in ("data", "model", "diffusion", "train")
    changed = dataclasses.replace(tiny, **{name: other_value(name, getattr(tiny, name))})
    keys = [cache_key(SYNTHETIC_SOURCE, {}, _data_params(params, SYNTHETIC_SOURCE))
            for params in (tiny, changed)]
    assert (keys[0] != keys[1]) == (group == "data")
    resume = lambda: params_lib.resolve(  # noqa: E731
        None, {name: getattr(changed, name)}, tiny, "--model_dir=runs/x", "use a new one")
    if group in ("model", "diffusion"):
        with pytest.raises(UserError, match=f"--model_dir=runs/x holds a model with other "
                                            f"architecture/diffusion params \\({name} "):
            resume()
    else:
        assert resume() == changed


def test_params_json_from_before_noise_conditioning_loads_as_step(tmp_path):
    path = tmp_path / "params.json"
    params_lib.preset("tiny").save(str(path))
    values = json.loads(path.read_text())
    del values["noise_conditioning"]
    path.write_text(json.dumps(values))
    assert params_lib.Params.load(str(path)).noise_conditioning == "step"
    del values["residual_layers"]
    path.write_text(json.dumps(values))
    with pytest.raises(params_lib.UserError, match="missing keys \\['residual_layers'\\]"):
        params_lib.Params.load(str(path))


def test_a_params_json_that_cannot_be_written_leaves_the_old_one_and_no_temporary(
        tmp_path, monkeypatch):
    import util
    path = tmp_path / "params.json"
    params_lib.preset("tiny").save(str(path))
    before = path.read_text()

    def disk_full(source, target):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(util.os, "replace", disk_full)
    with pytest.raises(params_lib.UserError, match="cannot write .*No space left on device"):
        params_lib.preset("base").save(str(path))
    assert path.read_text() == before and os.listdir(tmp_path) == ["params.json"]
