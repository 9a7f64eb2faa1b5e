"""Generation as a library of values, not flags: a trained model with its sampler plan and
windowing (a `Stage`) generates a batch; a `Cascade` chains stages, a sketch from noise and
upsamplers each conditioned on the stage below. generate.py, export.py, search_schedule.py and
the bench scripts call it instead of each loading, windowing, guiding and sampling on its own.
"""

import json
import os

import tensorflow as tf

from data.pipeline import band_limited, condition_of, upsampled_condition
from diffusion import samplers
from diffusion.core import Diffusion
from network import checkpoints
from network.windowed import windowed_network
from params import UserError

DEFAULT_WINDOW = 65536  # samples per network call: bounds memory, not the length
CASCADE_FILE = "cascade.json"
# How far an upsampler noises the stage below's audio by default, as a fraction of its schedule
# (conditioning augmentation trained it on 0 to condition_noise_max): 0, measured best for the
# shipped 7350 Hz upsampler from real low bands (bench/README.md, "the upsampler alone").
DEFAULT_CONDITION_LEVEL = 0.0
CONDITION_NOISE = -1  # the index of a stage's noise stream that noises its condition


def make_plan(params, sampler="fast", steps=None, fast_schedule=samplers.FAST_SCHEDULE,
              variance="beta_tilde", eta=0.0, model_dir=None):
    """The plan of `sampler` for a model of `params`.

    steps: ddim's step count (default params.sample_steps); for fast, the schedule that
      search_schedule.py found for this many steps in model_dir (fast_schedule is then unused).
    UserError for settings that do not fit the sampler.
    """
    diffusion = Diffusion.from_params(params)
    if sampler == "ddpm":
        if steps is not None:
            raise UserError(f"--steps applies to ddim and fast; ddpm takes all "
                            f"{diffusion.steps} training steps")
        return samplers.ddpm_plan(diffusion, variance)
    if sampler == "ddim":
        return samplers.ddim_plan(diffusion, params.sample_steps if steps is None else steps,
                                  eta)
    if steps is not None:
        return samplers.fast_plan(diffusion, samplers.load_schedule(model_dir, steps), variance)
    return samplers.fast_plan(diffusion, fast_schedule, variance)


class Stage:
    """A trained DiffWave ready to generate at its rate.

    params: its Params; network: the DiffWave (EMA weights as loaded); plan: the sampler's
    steps (`make_plan`, or a function (params, model_dir) -> plan; default fast); window:
    samples per network call (`network.windowed`; None: the whole signal at once);
    checkpoint: the path it was loaded from. `on_window`, when set, is called after every
    window of every network call (a progress bar).
    """

    def __init__(self, params, network, plan=None, window=DEFAULT_WINDOW, jit=False,
                 checkpoint=None, model_dir=None):
        self.params, self.network, self.checkpoint = params, network, checkpoint
        self.plan = (make_plan(params) if plan is None
                     else plan(params, model_dir) if callable(plan) else plan)
        self.on_window = None
        # One windowed network for every call: its graphs are traced once. window None: the
        # network on the whole signal (inside a graph, for any length: export.py).
        self.windowed = (network if window is None
                         else windowed_network(network, window, self._window_done, jit))

    @classmethod
    def load(cls, model_dir, checkpoint=None, ema=True, dilated_conv="direct", **options):
        """The Stage of model_dir's latest checkpoint (or `checkpoint`); `options` as
        Stage()'s. UserError when it cannot be loaded."""
        params = checkpoints.load_params(model_dir)
        network, found = checkpoints.load_latest(params, model_dir, checkpoint, ema,
                                                 dilated_conv)
        return cls(params, network, checkpoint=found, model_dir=model_dir, **options)

    def _window_done(self, *progress):
        if self.on_window:
            self.on_window(*progress)

    @property
    def sample_rate(self):
        return self.params.sample_rate

    @property
    def diffusion(self):
        return Diffusion.from_params(self.params)

    @property
    def labelled(self):
        return bool(self.params.label_names)

    @property
    def stages(self):
        """[self]: what a Cascade has, so callers need not tell the two apart."""
        return [self]

    def denoiser(self, label=None, guidance=1.0, inputs=None):
        """The samplers' model(x_t, t): windowed, with `label` (an index into
        params.label_names, or None) and classifier-free `guidance` for a labelled model, and
        an upsampler's condition `inputs`. It returns eps whatever the network predicts."""
        no_label = self.network.no_label if label is not None else None
        output = samplers.denoiser(self.windowed, label, no_label, guidance, inputs)
        diffusion = self.diffusion
        return lambda x, t: diffusion.eps_from_output(x, t, output(x, t))

    def condition(self, below, samples):
        """An upsampler's clean condition: `below` (float32 [batch, time, 1] at upsample_from)
        interpolated to this rate and cut to `samples`."""
        condition = upsampled_condition(tf.convert_to_tensor(below, tf.float32),
                                        self.params)[:, :samples]
        tf.debugging.assert_equal(tf.shape(condition)[1], samples,
                                  message="the stage below gave too short a condition")
        return condition

    def condition_inputs(self, condition, samples, level, noise):
        """An upsampler's inputs: its `condition` ([batch, samples, 1]) noised to `level` (a
        fraction of the schedule) with noise(CONDITION_NOISE, ...), and that level."""
        shape = [condition.shape[0], samples, 1]
        levels = tf.fill([shape[0]], tf.constant(level, tf.float32))
        noised = self.diffusion.noise_condition(
            condition, levels, noise(CONDITION_NOISE, shape)) if level else condition
        return {"condition": noised, "condition_level": levels}

    def post_filtered(self, audio, condition=None, keep=None):
        """The sampler's output low-passed to the band the model trained on (nothing above
        it is music it learned), an upsampler's band below its condition's edge replaced by
        the clean condition (the stage below's audio kept as it was, as AudioSR does), and a
        known region (`keep`, samplers.Known) put back exactly."""
        audio = band_limited(audio, self.params)
        if condition is not None:
            audio = audio - condition_of(audio, self.params) + condition
        return audio if keep is None else tf.where(keep.mask, keep.audio, audio)

    def generate(self, count, samples, seed=0, first_example=0, label=None, guidance=1.0,
                 plan=None, below=None, condition_level=DEFAULT_CONDITION_LEVEL, stage=0,
                 post_filter=True, **options):
        """Clips `first_example` .. `first_example + count - 1` of `seed`: each depends only on
        (seed, its number), not on the batch it is generated in.

        plan: instead of the Stage's own (a variation's end of it, a searched schedule);
        below: an upsampler's condition, the stage below's audio [count, time, 1] at
        params.upsample_from (time * upsample_factor >= samples), noised to condition_level;
        stage: its place in a cascade, which gives it noise streams of its own;
        post_filter: `post_filtered` output (False: the sampler's as drawn; a plan of no
          steps returns `start` as it is either way);
        options: samplers.sample's (clip_x0, corrector_steps, corrector_snr, start, keep,
        resamplings).
        Returns float32 [count, samples, 1] at the model rate.
        """
        noise = samplers.example_noise(seed, first_example, stage)
        inputs = condition = None
        if self.params.upsample_from:
            if below is None:
                raise ValueError("an upsampler generates from the audio of the stage below")
            condition = self.condition(below, samples)
            inputs = self.condition_inputs(condition, samples, condition_level, noise)
        plan = self.plan if plan is None else plan
        audio = samplers.sample(plan, self.denoiser(label, guidance, inputs),
                                [count, samples, 1], noise, **options)
        if not (post_filter and plan):  # without a step nothing was drawn: `start` as it is
            return audio
        return self.post_filtered(audio, condition, options.get("keep"))


def is_cascade(model_dir):
    """Whether model_dir holds a cascade (its CASCADE_FILE lists the stages' folders)."""
    return os.path.isfile(os.path.join(model_dir, CASCADE_FILE))


def stage_dirs(model_dir):
    """The stages' model dirs that model_dir's CASCADE_FILE lists, lowest rate first."""
    return [os.path.join(model_dir, name) for name in stage_names(model_dir)]


def stage_names(model_dir):
    """The stages' folders, as model_dir's CASCADE_FILE names them, lowest rate first."""
    path = os.path.join(model_dir, CASCADE_FILE)
    try:
        with open(path) as file:
            names = json.load(file)["stages"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path}: cannot read the stages ({error}); it holds "
                        '{"stages": ["sketch", "upsampler", ...]}, folders beside it') from None
    if not names or not all(isinstance(name, str) for name in names):
        raise UserError(f"{path}: \"stages\" must list one or more folders")
    return names


def stage_params(model_dir):
    """[(Params, folder)] of model_dir's model, or of each stage of its cascade, lowest rate
    first, checked to chain (`check_chain`) before any weights load."""
    if not is_cascade(model_dir):
        return [(checkpoints.load_params(model_dir), model_dir)]
    stages = [(checkpoints.load_params(folder), folder) for folder in stage_dirs(model_dir)]
    check_chain([params for params, _ in stages], [os.path.relpath(folder) for _, folder in stages])
    return stages


def stage_lengths(stages, samples):
    """Samples each stage (its Params, lowest rate first) generates for `samples` at the top
    rate; `samples` may be a tensor."""
    lengths = [samples]
    for params in reversed(stages[1:]):
        lengths.insert(0, -(-lengths[0] // params.upsample_factor))
    return lengths


def check_chain(stages, names):
    """UserError, naming the stage, unless each stage (its Params) after the first upsamples
    the one below (its upsample_from is that stage's rate, the same input rate and gain band)
    and labels agree."""
    first = stages[0]
    if first.upsample_from:
        raise UserError(f"{names[0]}: the first stage is an upsampler (from "
                        f"{first.upsample_from} Hz); a cascade starts with a model that "
                        "generates from noise")
    band = first.gain_rate or first.sample_rate
    for below, params, name in zip(stages, stages[1:], names[1:]):
        if params.upsample_from != below.sample_rate:
            what = (f"upsamples from {params.upsample_from} Hz" if params.upsample_from
                    else "generates from noise")
            raise UserError(f"{name}: {what}, but the stage below runs at {below.sample_rate} "
                            "Hz; its stages must chain (train it with "
                            f"--upsample_from={below.sample_rate})")
        if params.input_rate != first.input_rate:
            raise UserError(f"{name}: input_rate {params.input_rate}, the first stage's "
                            f"{first.input_rate}; train the stages on one input rate")
        if (params.gain_rate or params.sample_rate) != band:
            raise UserError(f"{name}: its files' gain was set on the {params.gain_rate} Hz band, "
                            f"the sketch's on {band} Hz, so its condition would not be as loud "
                            f"as the stage below makes it; train it with --gain_rate={band}")
        if params.label_names and params.label_names != first.label_names:
            raise UserError(f"{name}: labels {', '.join(params.label_names)}, the first "
                            f"stage's {', '.join(first.label_names) or 'none'}")


class Cascade:
    """Stages that chain: the first generates at its rate from noise, each next one upsamples
    the audio of the one below (`Stage.generate` with `below`). Labels go to every labelled
    stage; each stage draws its own noise streams."""

    def __init__(self, stages, names=None):
        self.stages = list(stages)
        self.names = names or [f"stage {number}" for number in range(1, len(stages) + 1)]
        check_chain([stage.params for stage in self.stages], self.names)

    @classmethod
    def load(cls, model_dir, ema=True, dilated_conv="direct", **options):
        """The cascade model_dir's CASCADE_FILE lists, each stage at its latest checkpoint;
        `options` as Stage()'s."""
        dirs = stage_dirs(model_dir)
        stages = [Stage.load(folder, None, ema, dilated_conv, **options) for folder in dirs]
        return cls(stages, [os.path.relpath(folder) for folder in dirs])

    @property
    def sample_rate(self):
        return self.stages[-1].sample_rate

    @property
    def checkpoint(self):
        return ", ".join(stage.checkpoint for stage in self.stages)

    def lengths(self, samples):
        """Samples each stage generates for `samples` at the top rate, lowest first."""
        return stage_lengths([stage.params for stage in self.stages], samples)

    def generate(self, count, samples, seed=0, first_example=0, label=None, guidance=1.0,
                 condition_levels=None, stage_options=None, **options):
        """Like Stage.generate, through every stage: float32 [count, samples, 1] at the top
        rate. condition_levels: one per upsampler (default DEFAULT_CONDITION_LEVEL each);
        stage_options: one dict per stage of Stage.generate's options for it alone (its
        variation's plan and start, the known audio it keeps, each at its rate)."""
        levels = condition_levels or [DEFAULT_CONDITION_LEVEL] * (len(self.stages) - 1)
        stage_options = stage_options or [{}] * len(self.stages)
        audio = None
        for number, (stage, length) in enumerate(zip(self.stages, self.lengths(samples))):
            audio = stage.generate(count, length, seed, first_example,
                                   label if stage.labelled else None, guidance, below=audio,
                                   condition_level=levels[number - 1] if number else 0.0,
                                   stage=number, **{**options, **stage_options[number]})
        return audio
