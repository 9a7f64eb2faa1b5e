"""Hyperparameters: the one place every tunable number lives.

`Params` is a frozen dataclass. Each field carries a `group` in its metadata:

* `data`  - preprocessing; every one of these keys the on-disk clip cache, so changing
            any of them can never reuse stale clips;
* `model` - the DiffWave architecture;
* `diffusion` - the noise schedule and loss;
* `train` - optimisation and how batches are drawn (does not touch the cache).

`model` and `diffusion` fields define what a checkpoint means: resuming with any of them changed
is refused.

Why the default schedule (T=200, linear beta 1e-4..0.02, the DiffWave paper's) is safe here:
it leaves abar_T = 0.132, so the terminal signal-to-noise ratio
abar_T * var(data) / (1 - abar_T) is 0.152 * var(data). Raw mastered music (RMS up to 0.45,
variance 0.2) would give 0.030, above the 0.01 warning level: the model would train on x_T
that still holds audible music, yet sample from pure noise. The pipeline normalises every file
to RMS 0.1 (variance 0.01, see `target_rms`), giving 0.0015: at t = T the model sees
essentially pure noise. The original notebook's T=20 (abar_T = 0.82) gives 0.045 even at
variance 0.01 and 0.89 on raw music, which training refuses.
"""

import dataclasses
import json
import math

from util import UserError, write_json  # noqa: F401  (UserError: where most modules find it)


BETA_SCHEDULES = ("linear", "quadratic", "sigmoid", "cosine", "log_snr")
PREDICTIONS = ("eps", "v")
LOSSES = ("l2", "l1")
SYNTHETIC_SETS = ("tones", "held_notes")  # data/synthetic.py's two built-in datasets
DILATION_PATTERNS = ("doubling", "odd")
NOISE_CONDITIONINGS = ("step", "continuous")
CHOICES = {"beta_schedule": BETA_SCHEDULES, "synthetic_set": SYNTHETIC_SETS, "loss": LOSSES,
           "dilation_pattern": DILATION_PATTERNS, "prediction": PREDICTIONS,
           "noise_conditioning": NOISE_CONDITIONINGS}  # the fields that take one of a few names
ADDED_LATER = {"noise_conditioning": "step", "warmup_steps": 0, "label_names": [],
               "label_dropout": 0.1, "gain_rate": 0, "upsample_from": 0,
               "condition_noise_max": 0.1, "synthetic_set": "tones",
               "prediction": "eps", "snr_first_db": 30.0, "snr_last_db": -25.0,
               "dilation_pattern": "doubling"}


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
    gain_rate: int = _field(
        0, "data", "The rate (Hz) whose band sets each file's gain: 0 is the model's own rate. "
        "The stages of a cascade share their sketch's, so that the audio an upsampler is "
        "conditioned on in training is exactly as loud as the stage below makes it.")
    val_fraction: float = _field(
        0.1, "data", "Share of files (not clips) held out for validation, chosen by a hash of "
        "each file's relative path, so the split is deterministic and stable as files are added.")
    synthetic_tones: int = _field(
        2048, "data", "Number of tones in the built-in dataset used when no --data_dir is given.")
    synthetic_set: str = _field(
        "tones", "data", "The built-in dataset: tones (one decaying harmonic tone a clip) or "
        "held_notes (a melody of two to four held notes or chords a clip).")
    synthetic_seed: int = _field(
        1234, "data", "Seed of the built-in dataset (fixed, so its cache is reused).")

    # --- model: DiffWave (Kong et al. 2020) -----------------------------------------------
    residual_channels: int = _field(64, "model", "C: channels in every residual layer.")
    residual_layers: int = _field(30, "model", "L: number of residual layers.")
    dilation_cycle: int = _field(
        10, "model", "Layer i has dilation 2**(i % dilation_cycle) (see dilation_pattern).")
    dilation_pattern: str = _field(
        "doubling", "model", "doubling: 2**(i % dilation_cycle), DiffWave's. odd: 1, then "
        "2**k + 1 (3, 5, 9, 17, ...): the same reach, but no layer's dilation is a multiple of 4, "
        "so no layer sees only samples whose positions agree modulo 4, the blind spot that lets "
        "a network add a steady tone at a quarter of its rate (gridding).")
    embedding_channels: int = _field(
        512, "model", "Width of the diffusion-step embedding MLP (after 128 sinusoids).")
    upsample_from: int = _field(
        0, "model", "0: a model that generates from noise (a cascade's sketch, or a model on "
        "its own). Else an upsampler: the rate (Hz) of the audio it is conditioned on, which "
        "it sees FIR-interpolated to its own rate and adds the band above.")
    label_names: tuple = _field(
        (), "model", "The labels (classes, genres) the network is conditioned on, in the order "
        "of its label embedding; empty for an unconditional model. Set by train.py "
        "--labels=folders from the data's folders, not by a flag.")

    # --- diffusion: DDPM (Ho et al. 2020) ----------------------------------------------------
    noise_steps: int = _field(200, "diffusion", "T: number of diffusion steps.")
    beta_schedule: str = _field(
        "linear", "diffusion", "Shape of beta_t: linear, quadratic, sigmoid, cosine, or log_snr "
        "(the data's signal-to-noise ratio falling evenly in dB from snr_first_db to "
        "snr_last_db, for data at target_rms: matched to the data's scale).")
    beta_start: float = _field(1e-4, "diffusion", "beta_1 (unused by cosine).")
    beta_end: float = _field(0.02, "diffusion", "beta_T (unused by cosine).")
    snr_first_db: float = _field(
        30.0, "diffusion", "log_snr: the data's SNR at the first (least noisy) step, in dB.")
    snr_last_db: float = _field(
        -25.0, "diffusion", "log_snr: the data's SNR at the last step, in dB (the terminal-SNR "
        "check still applies).")
    prediction: str = _field(
        "eps", "diffusion", "What the network outputs: eps (the noise, DDPM's) or v "
        "(sqrt(abar) eps - sqrt(1 - abar) x0, Salimans & Ho 2022).")
    loss: str = _field("l2", "diffusion", "Loss on the network's output: l2 (mean squared) "
                       "or l1.")
    noise_conditioning: str = _field(
        "step", "diffusion", "What training tells the network: step, the integer step t; or "
        "continuous (WaveGrad), a noise level sqrt(abar) drawn uniformly between steps t-1 and "
        "t, given as the fractional step of that level, so any inference schedule is in "
        "distribution.")

    # --- train: optimisation and how batches are drawn ----------------------------------
    batch_size: int = _field(16, "train", "Clips per training batch (global batch).")
    learning_rate: float = _field(2e-4, "train", "Adam learning rate.")
    warmup_steps: int = _field(
        0, "train", "Steps over which the learning rate rises linearly to learning_rate "
        "(step n uses learning_rate * min(1, n / warmup_steps)); 0 starts at learning_rate.")
    gradient_clip: float = _field(1.0, "train", "Gradients are clipped to this global norm.")
    ema_decay: float = _field(
        0.999, "train", "Decay of the exponential moving average of the weights used to "
        "generate, reached after a warm-up: step n uses min(ema_decay, (1 + n) / (10 + n)).")
    label_dropout: float = _field(
        0.1, "train", "With labels: the share of training clips shown with the 'no label' "
        "entry instead of theirs, so that one network learns the conditional and the "
        "unconditional noise prediction that classifier-free guidance combines.")
    condition_noise_max: float = _field(
        0.1, "train", "Upsamplers: conditioning augmentation (Cascaded Diffusion Models). Each "
        "training clip's condition is noised by the forward process to a level drawn uniformly "
        "from 0 (clean) to this fraction of the noise schedule, and the network is told the "
        "level, so at generation it can be told how far to trust the stage below.")
    sample_steps: int = _field(
        20, "train", "DDIM steps used for the clips written to TensorBoard while training.")
    shuffle_buffer: int = _field(
        4096, "train", "Clips held in the shuffle buffer (4096 x 16000 x 4 B = 256 MB).")

    def __post_init__(self):
        positive = ["input_rate", "decimation", "clip_samples", "synthetic_tones",
                    "batch_size", "shuffle_buffer", "lowpass_stopband_db", "target_rms",
                    "residual_channels", "residual_layers", "dilation_cycle",
                    "embedding_channels", "noise_steps", "beta_start", "beta_end",
                    "learning_rate", "gradient_clip", "sample_steps"]
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
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise UserError(f"params: {name} must be one of {choices} "
                                f"(got {getattr(self, name)!r})")
        if not self.snr_last_db < self.snr_first_db:
            raise UserError(f"params: need snr_last_db < snr_first_db (got {self.snr_last_db}, "
                            f"{self.snr_first_db})")
        if not self.beta_start < self.beta_end < 1.0:
            raise UserError(f"params: need 0 < beta_start < beta_end < 1 (got {self.beta_start}"
                            f", {self.beta_end})")
        if self.warmup_steps < 0:
            raise UserError(f"params: warmup_steps must be >= 0 (got {self.warmup_steps})")
        if not 0.0 <= self.label_dropout < 1.0:
            raise UserError(f"params: label_dropout must be in [0, 1) (got {self.label_dropout})")
        if not all(isinstance(name, str) and name for name in self.label_names):
            raise UserError(f"params: label_names must be non-empty strings (got "
                            f"{list(self.label_names)})")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UserError(f"params: ema_decay must be in [0, 1) (got {self.ema_decay})")
        if self.sample_steps > self.noise_steps:
            raise UserError(f"params: sample_steps ({self.sample_steps}) cannot exceed "
                            f"noise_steps ({self.noise_steps})")
        if self.gain_rate < 0 or (self.gain_rate and self.sample_rate % self.gain_rate):
            raise UserError(f"params: gain_rate must be 0 or a rate that divides the model's "
                            f"{self.sample_rate} Hz (got {self.gain_rate})")
        if self.upsample_from < 0 or (self.upsample_from and (
                self.upsample_from >= self.sample_rate
                or self.sample_rate % self.upsample_from)):
            raise UserError(f"params: upsample_from must be 0 or a rate below the model's "
                            f"{self.sample_rate} Hz that divides it (got {self.upsample_from}); "
                            "e.g. --decimation=3 --upsample_from=2450")
        if not 0.0 <= self.condition_noise_max <= 1.0:
            raise UserError(f"params: condition_noise_max must be in [0, 1] "
                            f"(got {self.condition_noise_max})")
        if self.target_rms > 1.0:
            raise UserError(f"params: target_rms must be <= 1 (got {self.target_rms})")

    @property
    def sample_rate(self):
        """The model's sample rate in Hz, after decimation."""
        return self.input_rate // self.decimation

    @property
    def upsample_factor(self):
        """sample_rate / upsample_from for an upsampler; 1 for a model that starts from noise."""
        return self.sample_rate // self.upsample_from if self.upsample_from else 1

    def group(self, name):
        """The fields of one group as a dict, e.g. `group("data")` keys the clip cache."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.metadata["group"] == name}

    def to_dict(self):
        return dataclasses.asdict(self)

    def save(self, path):
        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, values, source="params"):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        # Fields added after params.json files existed: absent means what those runs did.
        values = {**ADDED_LATER, **values}
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
    if kind is tuple and isinstance(value, list):
        value = tuple(value)
    if type(value) is not kind or (kind is float and not math.isfinite(value)):
        raise UserError(f"{source}: {field.name} must be a finite {kind.__name__} "
                        f"(got {value!r})")
    return value


BASE = Params()
PRESETS = {
    # Seconds-fast on a CPU: tests and the README demo.
    # T=50, beta to 0.05: abar_T = 0.28, terminal SNR 0.004 at variance 0.01.
    "tiny": dataclasses.replace(BASE, clip_samples=2048, synthetic_tones=256,
                                batch_size=8, shuffle_buffer=512, residual_channels=16,
                                residual_layers=6, dilation_cycle=3, embedding_channels=64,
                                noise_steps=50, beta_end=0.05, learning_rate=1e-3,
                                ema_decay=0.99, sample_steps=10),
    # Real training on music (GTZAN or your own folder).
    "base": BASE,
    # Music on a CPU in hours: the better of bench/README's first two recipe rows at equal CPU
    # time (wide and shallow; by less than the spread between sets of real music, but also
    # lighter and faster to generate); trains in 1.7 GB. pretrained/soundtracks-cpu is this.
    "cpu": dataclasses.replace(BASE, residual_channels=48, residual_layers=10, clip_samples=8000,
                               batch_size=8, learning_rate=5e-4),
    # The paper's unconditional model.
    "large": dataclasses.replace(BASE, residual_channels=256, residual_layers=36,
                                 dilation_cycle=12),
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


def resolve(preset_name, overrides, saved=None, source="", advice=""):
    """The params of a run: the preset `preset_name` (None when not asked for: base, or the
    saved model's own) with `overrides` ({field: value}) applied.

    A run that continues a saved model (`saved`, read from `source`, e.g. "--model_dir=runs/x")
    may change how it trains but not what its checkpoints mean: UserError, naming every changed
    architecture or diffusion field and ending with `advice`, when it would.
    """
    if saved is None:
        return preset(preset_name or "base", **overrides)
    wanted = (preset(preset_name, **overrides) if preset_name
              else dataclasses.replace(saved, **overrides))
    differences = [f"{name} {value} -> {wanted.group(group)[name]}"
                   for group in ("model", "diffusion")
                   for name, value in saved.group(group).items()
                   if wanted.group(group)[name] != value]
    if differences:
        raise UserError(f"{source} holds a model with other architecture/diffusion params "
                        f"({', '.join(differences)}); {advice}")
    return wanted
