"""Generates music with a model trained by train.py: the backward diffusion from pure noise.

  python generate.py --model_dir=runs/demo --seconds=30 --num_samples=4 --output_dir=out
  python generate.py --model_dir=runs/gtzan --seconds=600 --sampler=ddim --steps=50
  python generate.py --model_dir=runs/gtzan --init_audio=song.wav --strength=0.5  # variations
  python generate.py --model_dir=runs/gtzan --label=jazz --guidance=3  # a labelled model
  python generate.py --model_dir=runs/gtzan --prompt_audio=intro.wav --seconds=30  # continuation
  python generate.py --model_dir=runs/gtzan --prompt_audio=song.wav --inpaint=12:15  # inpainting

Any length fits in bounded memory: each network call runs on overlapping windows whose halo
covers the receptive field, which gives exactly the unwindowed result. Same flags and --seed
give byte-identical files; sample i depends only on (--seed, i), not on --batch_size.
"""

import copy
import math
import os
import sys
import time

from absl import flags

import cli
from network import kernels

# TensorFlow fixes its CPU kernels when it loads: the fastest for generation here, measured once.
KERNELS = kernels.choose("generate") if __name__ == "__main__" else ("default", "")
cli.quiet_tensorflow()

import numpy as np  # noqa: E402

from data import load_audio  # noqa: E402
from data.audio_files import remove_stale_partial_wavs, resample, write_wav  # noqa: E402
from diffusion import Diffusion, generation, samplers  # noqa: E402
from params import UserError  # noqa: E402

FLAGS = flags.FlagValues()
flags.DEFINE_string("model_dir", "runs/default", "The --model_dir that train.py wrote.",
                    flag_values=FLAGS)
flags.DEFINE_string("checkpoint", None, "A checkpoint to use instead of the latest: a path "
                    "prefix or a name in MODEL_DIR/checkpoints such as ckpt-3000.",
                    flag_values=FLAGS)
flags.DEFINE_boolean("no_ema", False, "Use the raw weights instead of their moving average.",
                     flag_values=FLAGS)
flags.DEFINE_float("seconds", None, "Length of each clip in seconds (default 10).",
                   flag_values=FLAGS)
flags.DEFINE_integer("samples", None, "Length of each clip in samples at --output_rate "
                     "(instead of --seconds).", flag_values=FLAGS)
flags.DEFINE_integer("num_samples", 1, "How many clips to write.", flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 1, "Clips generated together (faster on a GPU, more memory).",
                     flag_values=FLAGS)
flags.DEFINE_enum("sampler", "fast", samplers.SAMPLERS, "fast: DiffWave's few-step schedule "
                  "(--fast_schedule); ddim: --steps evenly spaced steps; ddpm: all T steps.",
                  flag_values=FLAGS)
flags.DEFINE_integer("steps", None, "Steps for ddim (default: the model's sample_steps); for "
                     "fast, use the schedule search_schedule.py found for this many steps.",
                     flag_values=FLAGS)
flags.DEFINE_list("fast_schedule", [str(beta) for beta in samplers.FAST_SCHEDULE],
                  "Inference betas for --sampler=fast, comma separated.", flag_values=FLAGS)
flags.DEFINE_enum("variance", "beta_tilde", samplers.POSTERIOR_VARIANCES,
                  "Reverse-step variance for ddpm and fast.", flag_values=FLAGS)
flags.DEFINE_float("eta", 0.0, "DDIM noise: 0 deterministic, 1 as ancestral.", flag_values=FLAGS)
flags.DEFINE_boolean("clip_x0", False, "Clip each step's predicted clean signal to [-1, 1].",
                     flag_values=FLAGS)
flags.DEFINE_integer("corrector_steps", 0, "Langevin corrector steps before each sampler step "
                     "(predictor-corrector sampling; each is one more network call).",
                     flag_values=FLAGS)
flags.DEFINE_float("corrector_snr", 0.16, "Signal-to-noise ratio that sets the corrector's "
                   "step size, 2 alpha_t (snr sigma_t)^2.", flag_values=FLAGS)
flags.DEFINE_string("init_audio", None, "Variations of this audio file (SDEdit): it is "
                    "brought to the model's rate and level like training data, noised to "
                    "--strength and denoised again; the clips are as long as the file.",
                    flag_values=FLAGS)
flags.DEFINE_float("strength", 0.5, "How much of --init_audio is redrawn: 0 returns it as it is, "
                   "1 ignores it; in between, the sampler runs from that fraction of the way "
                   "(in log signal-to-noise ratio) to pure noise.", flag_values=FLAGS)
flags.DEFINE_string("label", None, "For a model trained with --labels=folders: generate this "
                    "label's music (one of its folders, e.g. a genre).", flag_values=FLAGS)
flags.DEFINE_float("guidance", 1.0, "Classifier-free guidance scale with --label: 1 samples the "
                   "label's music as learned; above 1 (try 2-4) pushes harder towards what sets "
                   "the label apart, at some variety; 0 ignores the label.", flag_values=FLAGS)
flags.DEFINE_string("prompt_audio", None, "Continue this audio file: the clips start with it "
                    "(brought to the model's rate and level like training data) and go on to "
                    "--seconds; with --inpaint, the file whose region is drawn anew.",
                    flag_values=FLAGS)
flags.DEFINE_string("inpaint", None, "START:END in seconds: regenerate this region of "
                    "--prompt_audio and keep the rest; the clips are as long as the file.",
                    flag_values=FLAGS)
flags.DEFINE_integer("resamplings", 0, "With --prompt_audio, run each step this many more "
                     "times, noised back between runs (RePaint's resampling), for the new audio "
                     "to fit the kept audio better; as many more network calls. README: where "
                     "it helped.", flag_values=FLAGS)
flags.DEFINE_float("condition_level", generation.DEFAULT_CONDITION_LEVEL, "A cascade's "
                   "upsamplers: how far each noises the audio of the stage below before "
                   "conditioning on it, as a fraction of its noise schedule (conditioning "
                   "augmentation): 0 trusts it as it is; more lets the upsampler redraw more of "
                   "it.", flag_values=FLAGS)
flags.DEFINE_boolean("post_filter", True, "Low-pass each stage's output to the band it trained "
                     "on, and keep a cascade's lower bands as the stage below made them (an "
                     "upsampler's own low band replaced by its condition, as AudioSR does); "
                     "--nopost_filter writes the samplers' output as drawn. bench/README.md: "
                     "what it changes.", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Random seed.", flag_values=FLAGS)
flags.DEFINE_string("output_dir", "samples", "Folder for the WAV files (created if missing).",
                    flag_values=FLAGS)
flags.DEFINE_integer("output_rate", None, "Sample rate of the files; the model's own rate by "
                     "default, e.g. 22050 or 44100 resamples (polyphase) for any player.",
                     flag_values=FLAGS)
flags.DEFINE_integer("window", 65536, "Samples per network call and clip; longer clips are "
                     "computed in overlapping windows. Bounds memory.", flag_values=FLAGS)
cli.define_runtime_flags(FLAGS, distribute=False)

DEFAULT_SECONDS = 10.0
# Peak memory per generated sample (x_t, its noise, the prediction and their copies in float32;
# 27 bytes measured for a 1200 s clip) and for the network, windows and TensorFlow itself.
BYTES_PER_SAMPLE = 40
BASE_BYTES = 1.5e9


class Progress:
    """A progress bar over batches x (for each stage of a cascade) steps x windows with an ETA
    on stderr: redrawn in place on a terminal, else a line every few seconds; and, given
    `report`, report(fraction done, the bar's line) up to five times a second (a page's bar)."""

    def __init__(self, label, batches, stages, report=None):
        """stages: [(network calls, windows per call)] of each stage, lowest rate first."""
        self.label, self.batches, self.stages = label, batches, stages
        self.per_batch = sum(steps * windows for steps, windows in stages)
        self.total, self.done = batches * self.per_batch, 0
        self.start = self.shown = self.reported = time.perf_counter()
        self.terminal = sys.stderr.isatty()
        self.report, self.reported_stage = report, None

    def advance(self, *_):
        """Called after each window of each network call of each stage of each batch."""
        self.done += 1
        now = time.perf_counter()
        last = self.done == self.total
        batch, rest = divmod(self.done - 1, self.per_batch)
        for number, (steps, windows) in enumerate(self.stages, 1):
            if rest < steps * windows:
                break
            rest -= steps * windows
        show = now - self.shown >= (0.2 if self.terminal else 5.0) or last
        # A page hears of every stage as it starts, however fast it runs.
        report = self.report and (now - self.reported >= 0.2 or last
                                  or number != self.reported_stage)
        if not (show or report):
            return
        step, window = divmod(rest, windows)
        fraction = self.done / self.total
        eta = time.strftime("%H:%M:%S", time.gmtime((now - self.start) * (1 / fraction - 1)))
        where = f"stage {number}/{len(self.stages)} " if len(self.stages) > 1 else ""
        line = (f"{self.label} [{'#' * int(30 * fraction):30s}] {100 * fraction:3.0f}%  batch "
                f"{batch + 1}/{self.batches} {where}step {step + 1}/{steps} window "
                f"{window + 1}/{windows}  ETA {eta}")
        if report:
            self.reported, self.reported_stage = now, number
            self.report(fraction, line)
        if show:
            self.shown = now
            sys.stderr.write("\r" + line + ("\n" if last else "") if self.terminal
                             else line + "\n")
            sys.stderr.flush()


def make_plan(args, params, model_dir):
    """The chosen sampler's plan for a model (a stage) in model_dir; UserError for flags that
    do not fit it."""
    if args.steps is not None and args.sampler == "fast" and args["fast_schedule"].present:
        raise UserError("give --steps (a searched schedule) or --fast_schedule, not both")
    return generation.make_plan(params, args.sampler, args.steps, cli.fast_schedule(args),
                                args.variance, args.eta, model_dir)


def load_stages(args):
    """[(params, model dir)] of --model_dir's model, or of its cascade's stages, lowest first."""
    if args.checkpoint is not None and generation.is_cascade(args.model_dir):
        raise UserError(f"--checkpoint picks one model's checkpoint; --model_dir="
                        f"{args.model_dir} is a cascade, whose stages each generate from their "
                        "latest (give a stage's folder to use another of its checkpoints)")
    return generation.stage_params(args.model_dir)


def load_model(args, stages, plans, dilated_conv):
    """The Stage, or the Cascade of Stages, of `stages` (load_stages) with their `plans`."""
    loaded = [generation.Stage.load(folder, args.checkpoint, not args.no_ema, dilated_conv,
                                    plan=plan, window=args.window, jit=args.jit)
              for (_, folder), plan in zip(stages, plans)]
    if not generation.is_cascade(args.model_dir):
        return loaded[0]
    return generation.Cascade(loaded, [os.path.relpath(folder) for _, folder in stages])


def clip_lengths(args, model_rate, output_rate):
    """(samples to generate at the model rate, samples per file at the output rate)."""
    if args.samples is not None and args.seconds is not None:
        raise UserError("give --seconds or --samples, not both")
    if args.samples is not None:
        if args.samples <= 0:
            raise UserError(f"--samples must be > 0 (got {args.samples})")
        output_samples = args.samples
    else:
        seconds = DEFAULT_SECONDS if args.seconds is None else args.seconds
        if not seconds > 0 or not math.isfinite(seconds):
            raise UserError(f"--seconds must be > 0 (got {seconds})")
        output_samples = max(1, round(seconds * output_rate))
    return math.ceil(output_samples * model_rate / output_rate), output_samples


def file_length(model_samples, model_rate, output_rate):
    """Samples per file at the output rate of a clip as long as a given file (`model_samples`
    at the model rate)."""
    return max(1, round(model_samples * output_rate / model_rate))


def available_memory():
    """Bytes of memory the system can give this process without swapping."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(model_samples, output_samples, batch):
    """UserError, before any work, when `batch` clips at once cannot fit in memory."""
    need = BASE_BYTES + BYTES_PER_SAMPLE * batch * max(model_samples, output_samples)
    available = available_memory()
    if need > available:
        raise UserError(
            f"{batch} clip(s) of {model_samples} samples at once need about {need / 1e9:.3g} GB "
            f"of memory, more than the {available / 1e9:.3g} GB available; generate shorter "
            "clips (--seconds) or fewer at once (--batch_size)")


def output_path(args, index):
    """The WAV file of clip number `index`."""
    label = f"{args.label}_" if args.label else ""
    return os.path.join(args.output_dir,
                        f"{label}{args.sampler}_seed{args.seed}_{index:03d}.wav")


def chosen_label(args, params):
    """--label as an index into the model's labels (None without it); UserError when the model
    has no such label."""
    if args.guidance < 0:
        raise UserError(f"--guidance must be >= 0 (got {args.guidance})")
    if args.label is None:
        if args["guidance"].present:
            raise UserError("--guidance applies to --label; give the label to generate")
        return None
    if not params.label_names:
        raise UserError(f"--label={args.label}: --model_dir={args.model_dir} is an "
                        "unconditional model (trained without --labels=folders); drop --label")
    if args.label not in params.label_names:
        raise UserError(f"--label={args.label}: unknown; --model_dir={args.model_dir} knows "
                        f"{', '.join(params.label_names)}")
    return params.label_names.index(args.label)


def check_output_dir(args):
    """UserError unless --output_dir is, or can be made, a writable folder and no output file
    name is taken by a folder. Creates nothing."""
    for index in range(args.num_samples):
        if os.path.isdir(output_path(args, index)):
            raise UserError(f"{output_path(args, index)} is a folder; move it or choose another "
                            "--output_dir or --seed")
    path = args.output_dir
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK):
        raise UserError(f"--output_dir={path} cannot be written ({existing} is "
                        f"{'not a folder' if not os.path.isdir(existing) else 'read-only'}); "
                        "choose another --output_dir")


def stage_options(args, params, plan, output_rate, model_samples=None):
    """One stage's Stage.generate options for the flags (its plan; a variation's end of it and
    start, or the known audio of a continuation, at its rate), its length in samples and the
    file's (None for a stage below the top, whose length `model_samples` is given)."""
    if args.init_audio is not None:
        plan, start, model_samples, output_samples = variation_start(args, params, plan,
                                                                     output_rate)
        return {"plan": plan, "start": start}, model_samples, output_samples
    if args.prompt_audio is not None:
        keep, model_samples, output_samples = known_audio(args, params, output_rate, model_samples)
        return ({"plan": plan, "keep": keep, "resamplings": args.resamplings}, model_samples,
                output_samples)
    if model_samples is not None:
        return {"plan": plan}, model_samples, None
    return {"plan": plan}, *clip_lengths(args, params.sample_rate, output_rate)


def variation_start(args, params, plan, output_rate):
    """--init_audio: (the end of `plan` to run, the audio to start from or None, samples at the
    model rate, samples per file)."""
    if args.seconds is not None or args.samples is not None:
        raise UserError("--init_audio sets the length (its own); drop --seconds/--samples")
    plan = samplers.from_audio(plan, Diffusion.from_params(params), args.strength,
                               params.target_rms ** 2)  # the level training data has
    start = load_audio(args.init_audio, params)
    # Strength 1 ignores the input: pure noise, as without it.
    return (plan, None if args.strength == 1 else start[None, :, None], len(start),
            file_length(len(start), params.sample_rate, output_rate))


def parse_inpaint(args, duration):
    """--inpaint=START:END -> (start, end) seconds inside a file of `duration` seconds."""
    try:
        start, end = (float(part) for part in args.inpaint.split(":"))
    except ValueError:
        raise UserError(f"--inpaint={args.inpaint}: give START:END in seconds, e.g. "
                        "12.5:15") from None
    if not 0 <= start < end <= duration:
        raise UserError(f"--inpaint={args.inpaint} lies outside {args.prompt_audio}, which "
                        f"is {duration:g} s long; give 0 <= START < END <= {duration:g}")
    return start, end


def known_audio(args, params, output_rate, model_samples=None):
    """--prompt_audio: (the `samplers.Known` the clips keep, samples at the model rate, samples
    per file). Continuation keeps the file at the start of --seconds (or of `model_samples`, a
    lower stage's length); --inpaint keeps all of the file but the region."""
    audio = load_audio(args.prompt_audio, params)
    rate = params.sample_rate
    if args.inpaint is not None:
        if args.seconds is not None or args.samples is not None:
            raise UserError("--inpaint keeps the file's length; drop --seconds/--samples")
        start, end = parse_inpaint(args, len(audio) / rate)
        return (samplers.known(audio, round(start * rate), round(end * rate)), len(audio),
                file_length(len(audio), rate, output_rate))
    if model_samples is None:
        model_samples, output_samples = clip_lengths(args, rate, output_rate)
    else:
        output_samples = None
    if len(audio) >= model_samples:
        raise UserError(f"--prompt_audio={args.prompt_audio} is {len(audio) / rate:g} s, not "
                        f"shorter than the {model_samples / rate:g} s to generate; give a longer "
                        "--seconds")
    padded = np.concatenate([audio, np.zeros(model_samples - len(audio), np.float32)])
    return samplers.known(padded, len(audio), model_samples), model_samples, output_samples


def parse(argv):
    """generate.py's flags parsed from `argv` (`[program, flags...]`) into a copy of FLAGS,
    which stays as it is: what `run` takes, for callers that build a command line (studio.py).
    UserError for a flag absl refuses."""
    args = copy.deepcopy(FLAGS)
    args.unparse_flags()  # the defaults, whatever FLAGS was last parsed from
    try:
        args(argv)
    except flags.Error as error:
        raise UserError(str(error)) from None
    return args


def generate():
    cli.configure_runtime(FLAGS)
    run(FLAGS)


def run(args, report=None):
    """Writes the clips `args` (parsed generate.py flags) ask for and returns their paths;
    `report(fraction done, progress line)` is called as the sampler goes. UserError, before
    any work, for settings that do not fit the model, the files or the memory."""
    cli.require_positive(args, "num_samples", "batch_size", "window", "corrector_snr")
    for name in ("corrector_steps", "resamplings"):
        if args[name].value < 0:
            raise UserError(f"--{name} must be >= 0 (got {args[name].value})")
    if args.init_audio is not None and args.prompt_audio is not None:
        raise UserError("give --init_audio (variations) or --prompt_audio (continuation, "
                        "inpainting), not both")
    if args.init_audio is None and args["strength"].present:
        raise UserError("--strength applies to --init_audio; give the file to vary")
    if args.prompt_audio is None and (args.inpaint is not None or args.resamplings):
        raise UserError("--inpaint and --resamplings apply to --prompt_audio; give the file")
    if not 0 <= args.condition_level <= 1:
        raise UserError(f"--condition_level must be in [0, 1] (got {args.condition_level})")
    stages = load_stages(args)
    params, top = stages[0][0], stages[-1][0]  # the first stage's labels, the top one's rate
    label = chosen_label(args, params)
    model_rate = top.sample_rate
    output_rate = args.output_rate or model_rate
    if output_rate <= 0:
        raise UserError(f"--output_rate must be > 0 (got {output_rate})")
    plans = [make_plan(args, stage, folder) for stage, folder in stages]
    # The top stage sets the length; each stage below runs on its share of it, with the input
    # audio of a variation or a continuation brought to its own rate.
    top_options, model_samples, output_samples = stage_options(args, top, plans[-1], output_rate)
    lengths = generation.stage_lengths([stage for stage, _ in stages], model_samples)
    options = [stage_options(args, stage, plan, output_rate, length)[0]
               for (stage, _), plan, length in zip(stages[:-1], plans[:-1], lengths[:-1])]
    options.append(top_options)
    check_memory(model_samples, output_samples, min(args.batch_size, args.num_samples))
    check_output_dir(args)
    if os.path.isdir(args.output_dir):
        for path in remove_stale_partial_wavs(args.output_dir):
            print(f"removed {path}, left by a generate.py that was killed", file=sys.stderr)
    dilated_conv, said = cli.dilated_conv(args, training=False)
    model = load_model(args, stages, [option["plan"] for option in options], dilated_conv)
    print("\n".join(filter(None, [KERNELS[1], said])), file=sys.stderr)

    batches = math.ceil(args.num_samples / args.batch_size)
    calls = (1 + args.corrector_steps) * (1 + args.resamplings)
    progress = Progress(f"{args.num_samples} x {output_samples / output_rate:g} s, "
                        f"{args.sampler}", batches,
                        [(len(stage.plan) * calls, math.ceil(length / args.window))
                         for stage, length in zip(model.stages, lengths)], report)
    for stage in model.stages:
        stage.on_window = progress.advance
    common = dict(clip_x0=args.clip_x0, corrector_steps=args.corrector_steps,
                  corrector_snr=args.corrector_snr, post_filter=args.post_filter)
    if len(stages) > 1:
        common.update(condition_levels=[args.condition_level] * (len(stages) - 1),
                      stage_options=options)
    else:
        common.update(options[0])
    started, paths = time.perf_counter(), []
    for first in range(0, args.num_samples, args.batch_size):
        count = min(args.batch_size, args.num_samples - first)
        audio = model.generate(count, model_samples, args.seed, first, label, args.guidance,
                               **common)
        for offset, clip in enumerate(audio.numpy()[..., 0]):
            # Clipped after resampling, whose filter can overshoot: 16-bit WAV must stay in +-1.
            clip = np.clip(resample(clip, model_rate, output_rate)[:output_samples], -1.0, 1.0)
            path = output_path(args, first + offset)
            write_wav(path, clip, output_rate)
            print(path, flush=True)
            paths.append(path)
    seconds = time.perf_counter() - started
    audio_seconds = args.num_samples * output_samples / output_rate
    print(f"wrote {args.num_samples} files, {audio_seconds:g} s of audio in {seconds:.1f} s "
          f"({seconds / audio_seconds:.3f} s per audio second) from {model.checkpoint}",
          file=sys.stderr)
    return paths


def main(argv):
    """The command with argv (`[program, flags...]`) in this process; returns its exit status."""
    return cli.main(generate, FLAGS, argv, "interrupted; the files listed above are complete, "
                    "no partial file was left")


if __name__ == "__main__":
    cli.run(main)
