"""Hyperparameters: the one place every tunable number lives.

`Params` is a frozen dataclass. Each field carries a `group` in its metadata:

* `data`  - preprocessing; every one of these keys the on-disk clip cache, so changing
            any of them can never reuse stale clips;
* `train` - how batches are drawn (does not touch the cache).

Named presets (`PRESETS`) give complete configurations; command-line flags override single
fields (`define_flags` / `from_flags`), and the result is saved as `params.json` beside
checkpoints (`save` / `load`).
"""

import dataclasses
import json
import math
import os

from absl import flags


class UserError(Exception):
    """A problem the user can fix (a flag, a file, a folder); shown as one line, no traceback."""


def _field(default, group, doc):
    return dataclasses.field(default=default, metadata={"group": group, "doc": doc})


@dataclasses.dataclass(frozen=True)
class Params:
    # --- data: audio in -> clips at the model rate ---------------------------------------
    input_rate: int = _field(
        22050, "data", "Hz every file is brought to before decimation (GTZAN's own rate).")
    decimation: int = _field(
        3, "data", "Integer downsampling factor after the FIR low-pass: 22050 / 3 = 7350 Hz.")
    lowpass_stopband_db: float = _field(
        70.0, "data", "Kaiser design target for the anti-aliasing filter's stopband (dB); "
        "70 leaves margin over the required 60 dB and gives ~0.005 dB passband ripple.")
    lowpass_transition: float = _field(
        0.1, "data", "Transition band as a fraction of the new Nyquist: the passband ends at "
        "(1 - transition) * Nyquist and the stopband starts exactly at Nyquist.")
    clip_samples: int = _field(
        16000, "data", "Samples per training clip at the model rate (16000 = 2.18 s at 7350 Hz, "
        "the clip length of DiffWave's unconditional model). The tail shorter than a clip is "
        "dropped.")
    silence_dbfs: float = _field(
        -50.0, "data", "A clip whose RMS, before normalisation, is below this level (dB full "
        "scale) is near-silent and dropped.")
    target_rms: float = _field(
        0.1, "data", "Amplitude normalisation: each file gets one gain so its non-silent clips "
        "have this RMS (-20 dBFS), capped so that no sample exceeds +-1. One gain per file keeps "
        "the dynamics inside a track; it removes the 0.05-0.45 RMS spread of mastered music.")
    val_fraction: float = _field(
        0.1, "data", "Share of files (not clips) held out for validation, chosen by a hash of "
        "each file's relative path, so the split is deterministic and stable as files are added.")
    synthetic_tones: int = _field(
        2048, "data", "Number of tones in the built-in dataset used when no --data_dir is given.")
    synthetic_seed: int = _field(
        1234, "data", "Seed of the built-in dataset (fixed, so its cache is reused).")

    # --- train: how batches are drawn ----------------------------------------------------
    batch_size: int = _field(16, "train", "Clips per training batch (global batch).")
    shuffle_buffer: int = _field(
        4096, "train", "Clips held in the shuffle buffer (4096 x 16000 x 4 B = 256 MB).")

    def __post_init__(self):
        positive = ["input_rate", "decimation", "clip_samples", "synthetic_tones",
                    "batch_size", "shuffle_buffer", "lowpass_stopband_db", "target_rms"]
        for name in positive:
            if not getattr(self, name) > 0:
                raise UserError(f"params: {name} must be > 0 (got {getattr(self, name)})")
        if self.input_rate % self.decimation:
            raise UserError(f"params: input_rate {self.input_rate} is not divisible by "
                            f"decimation {self.decimation}; choose rates with an integer ratio")
        if not 0.0 < self.lowpass_transition < 1.0:
            raise UserError("params: lowpass_transition must be in (0, 1) "
                            f"(got {self.lowpass_transition})")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UserError(f"params: val_fraction must be in [0, 1) (got {self.val_fraction})")
        if self.target_rms > 1.0:
            raise UserError(f"params: target_rms must be <= 1 (got {self.target_rms})")

    @property
    def sample_rate(self):
        """The model's sample rate in Hz, after decimation."""
        return self.input_rate // self.decimation

    def group(self, name):
        """The fields of one group as a dict, e.g. `group("data")` keys the clip cache."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.metadata["group"] == name}

    def to_dict(self):
        return dataclasses.asdict(self)

    def save(self, path):
        """Writes the params as JSON, atomically (temp name, then rename)."""
        temp_path = f"{path}.tmp-{os.getpid()}"
        with open(temp_path, "w") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(temp_path, path)

    @classmethod
    def from_dict(cls, values, source="params"):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        missing = sorted(names - set(values))
        if unknown or missing:
            problems = []
            if unknown:
                problems.append(f"unknown keys {unknown}")
            if missing:
                problems.append(f"missing keys {missing}")
            raise UserError(f"{source}: {' and '.join(problems)}; it was written by another "
                            "version of this project or edited by hand")
        return cls(**{f.name: _coerce(f, values[f.name], source)
                      for f in dataclasses.fields(cls)})

    @classmethod
    def load(cls, path):
        try:
            with open(path) as f:
                values = json.load(f)
        except (OSError, ValueError) as error:
            raise UserError(f"{path}: cannot read params ({error})") from None
        if not isinstance(values, dict):
            raise UserError(f"{path}: expected a JSON object of params")
        return cls.from_dict(values, source=path)


def _coerce(field, value, source):
    """Checks one JSON value against the field's type (ints are accepted for floats)."""
    kind = type(field.default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not kind or (kind is float and not math.isfinite(value)):
        raise UserError(f"{source}: {field.name} must be a finite {kind.__name__} "
                        f"(got {value!r})")
    return value


BASE = Params()
PRESETS = {
    # Seconds-fast on a CPU: tests and the README demo.
    "tiny": dataclasses.replace(BASE, clip_samples=2048, synthetic_tones=256,
                                batch_size=8, shuffle_buffer=512),
    # Real training on music (GTZAN or your own folder).
    "base": BASE,
}


def preset(name, **overrides):
    """The named preset with some fields replaced."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    names = {f.name for f in dataclasses.fields(Params)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UserError(f"unknown params {unknown}")
    return dataclasses.replace(PRESETS[name], **overrides)


_FLAG_DEFINERS = {int: flags.DEFINE_integer, float: flags.DEFINE_float,
                  str: flags.DEFINE_string, bool: flags.DEFINE_boolean}


def define_flags(flag_values=flags.FLAGS):
    """Defines `--preset` plus one optional override flag per `Params` field."""
    flags.DEFINE_string("preset", "base", f"Hyperparameter preset: {', '.join(PRESETS)}.",
                        flag_values=flag_values)
    for field in dataclasses.fields(Params):
        _FLAG_DEFINERS[type(field.default)](
            field.name, None, f"Override the preset's {field.name}: {field.metadata['doc']}",
            flag_values=flag_values)


def from_flags(flag_values=flags.FLAGS):
    """The preset chosen by `--preset`, with every field flag that was given applied."""
    overrides = {field.name: flag_values[field.name].value for field in dataclasses.fields(Params)
                 if flag_values[field.name].value is not None}
    return preset(flag_values.preset, **overrides)
