"""Trains DiffWave on a folder of music, or on the built-in tones when --data_dir is left out.

  python train.py --preset=tiny                                   # the demo, a minute on a CPU
  python train.py --data_dir=/path/to/genres_original --model_dir=runs/gtzan
  python train.py --data_dir=/path/to/genres_original --labels=folders  # genre-conditioned

Re-running the same command resumes from the latest checkpoint in --model_dir; Ctrl-C or
SIGTERM saves one first. TensorBoard:
`tensorboard --logdir=MODEL_DIR` shows train/val loss, learning rate, gradient norm,
throughput, and generated clips (audio and spectrograms) beside real ones.

The training itself is diffusion/training.py's `Trainer`, given plain arguments; this command
turns the flags into them, after the run's checks (params against the model dir's, labels,
precision, the noise schedule's terminal SNR, a fine-tuning source's architecture).
"""

import dataclasses
import os
import sys

from absl import flags, logging

import cli
from network import kernels

# TensorFlow fixes its CPU kernels when it loads: the fastest for training here, measured once.
KERNELS = kernels.choose("train") if __name__ == "__main__" else ("default", "")
cli.quiet_tensorflow()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import data  # noqa: E402
import params as params_lib  # noqa: E402
import util  # noqa: E402
from data.audio_files import find_audio_files  # noqa: E402
from diffusion import SNR_REFUSE, SNR_WARN, Diffusion, training  # noqa: E402
from network import checkpoints, runtime  # noqa: E402

FLAGS = flags.FlagValues()
cli.define_data_flags(FLAGS)
cli.define_params_flags(FLAGS)
cli.define_runtime_flags(FLAGS, distribute=True)
flags.DEFINE_string("model_dir", "runs/default", "Checkpoints, params.json and TensorBoard logs.",
                    flag_values=FLAGS)
flags.DEFINE_integer("max_steps", 100_000, "Train until this global step.", flag_values=FLAGS)
flags.DEFINE_integer("checkpoint_every", 1000, "Steps between checkpoints (and val loss).",
                     flag_values=FLAGS)
flags.DEFINE_integer("log_every", 50, "Steps between progress lines and scalar summaries.",
                     flag_values=FLAGS)
flags.DEFINE_integer("sample_every", 5000, "Steps between generated clips in TensorBoard.",
                     flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Seed for weights, noise and data order.", flag_values=FLAGS)
flags.DEFINE_string("init_from", None, "Fine-tune: start from the EMA weights of this model "
                    "folder's latest checkpoint (a --model_dir, or pretrained/NAME), keeping its "
                    "architecture and diffusion params; step counter and optimiser start fresh. "
                    "A --model_dir that already has checkpoints resumes instead.",
                    flag_values=FLAGS)
flags.DEFINE_string("stage", None, "With a cascade (a folder with cascade.json, such as "
                    "pretrained/NAME) as --init_from or --model_dir: the stage to train, by its "
                    "folder name (default: the first, the sketch). Fine-tuning a cascade makes "
                    "--model_dir a cascade too: the stage trained there, beside copies of the "
                    "others, so generate.py runs the whole chain.", flag_values=FLAGS)
flags.DEFINE_boolean("recompute", False, "Keep only each residual layer's input for the "
                     "backward pass and recompute the rest there: about half the training "
                     "memory for about a fifth more time (bench/README.md).", flag_values=FLAGS)
flags.DEFINE_enum("labels", "none", ("none", "folders"), "folders: condition the model on each "
                  "file's first folder under --data_dir (GTZAN's genres), with --label_dropout "
                  "of the clips shown unlabelled, so generate.py --label --guidance works.",
                  flag_values=FLAGS)
flags.DEFINE_boolean("allow_high_snr", False, "Train even when the noise schedule leaves more "
                     f"than {SNR_REFUSE} terminal signal-to-noise ratio.", flag_values=FLAGS)

# --- the command: flags in, checked arguments out ------------------------------------------

def resolve_params(model_dir, init_from=None):
    """Params for this run: params.json when resuming (else --init_from's), with the flags given
    applied; UserError when they change the architecture or the diffusion of a saved model."""
    saved_path = os.path.join(model_dir, "params.json")
    saved, source, advice = None, "", ""
    if os.path.exists(saved_path):
        saved, source = params_lib.Params.load(saved_path), f"--model_dir={model_dir}"
        advice = "drop those flags to resume, or use a new --model_dir"
    elif init_from:
        saved, source = checkpoints.load_params(init_from), f"--init_from={init_from}"
        advice = "drop those flags to fine-tune it, or train from scratch without --init_from"
    preset = FLAGS.preset if FLAGS["preset"].present else None
    return params_lib.resolve(preset, cli.params_overrides(FLAGS), saved, source, advice)


def init_checkpoint(params, init_from):
    """The checkpoint of --init_from whose EMA weights start a fine-tuning run (checked to load
    into the network `params` describe), or None without --init_from."""
    if not init_from:
        return None
    latest = checkpoints.latest_checkpoint(os.path.join(init_from, "checkpoints"))
    if latest is None:
        raise params_lib.UserError(f"--init_from={init_from} holds no checkpoint; give a "
                                   "--model_dir that train.py wrote, or pretrained/NAME")
    checkpoints.load_model(params, latest)  # refuses another architecture, NaN weights
    return latest


def check_checkpoint(params, checkpoint, model_dir):
    """UserError unless `checkpoint` loads into the network `params` describe."""
    try:
        checkpoints.load_model(params, checkpoint)
    except params_lib.UserError:
        if os.path.exists(os.path.join(model_dir, "params.json")):
            raise
        raise params_lib.UserError(
            f"--model_dir={model_dir} holds checkpoints ({checkpoint}) but no params.json, and "
            "they do not fit the network these flags describe; put its params.json back, or "
            "give a new --model_dir") from None


def check_label_folders(data_dir, label_names):
    """Before preprocessing, for --labels=folders (`label_names` empty: a new labelled model) or
    a labelled model: UserError unless `data_dir`'s audio files lie in two or more folders and
    none outside them, or in folders of the model's labels only."""
    if data_dir is None:
        needs = (f"the model is labelled ({', '.join(label_names)}), so it" if label_names
                 else "--labels=folders")
        raise params_lib.UserError(f"{needs} needs --data_dir (a folder per label); the "
                                   "built-in tones have no labels")
    if not os.path.isdir(data_dir):
        return  # data.prepare names what is wrong
    names = sorted({data.label_of(os.path.relpath(path, os.path.abspath(data_dir)))
                    for path in find_audio_files(data_dir)})
    unknown = [name for name in names if name not in label_names]
    if label_names and unknown:
        shown = ", ".join(name or "(files outside any folder)" for name in unknown)
        raise params_lib.UserError(
            f"--data_dir={data_dir} has clips labelled {shown}, which the model does not know "
            f"(its labels: {', '.join(label_names)}); give data in those folders only, or "
            "train a new model")
    if label_names:
        return
    if "" in names:
        raise params_lib.UserError(
            f"--labels=folders: --data_dir={data_dir} has files outside any folder, which would "
            "have no label; put every file in a folder named after its label "
            "(e.g. DATA/jazz/x.wav)")
    if len(names) < 2:
        raise params_lib.UserError(f"--labels=folders: --data_dir={data_dir} has {len(names)} "
                                   f"label folder(s) ({', '.join(names)}); it needs two or more")


def check_upsampler(params):
    """UserError when an upsampler's clips are too short for the crop its condition needs."""
    crop = data.condition_crop(params)
    if data.training_samples(params) < crop:
        raise params_lib.UserError(
            f"--clip_samples={params.clip_samples} is too short for an upsampler from "
            f"{params.upsample_from} Hz: {crop} samples are cut from each end (where its low band, "
            f"made from the clip alone, is wrong); give --clip_samples >= {3 * crop}")


def check_schedule(diffusion, data_variance, allow_high_snr):
    """UserError (a warning, below SNR_REFUSE) when the schedule's last step leaves the data
    audible: the model would never see the pure noise that sampling starts from."""
    snr = diffusion.terminal_snr(data_variance)
    message = (f"the noise schedule leaves terminal SNR abar_T * var / (1 - abar_T) = "
               f"{diffusion.alpha_bars64[-1]:.3f} * {data_variance:.4f} / "
               f"{1 - diffusion.alpha_bars64[-1]:.3f} = {snr:.4f}: the model would never see "
               "pure noise, yet sampling starts from it; raise --noise_steps or --beta_end (with "
               "log_snr: lower --snr_last_db), or lower --target_rms")
    if snr > SNR_REFUSE and not allow_high_snr:
        raise params_lib.UserError(f"{message} (refused above {SNR_REFUSE}; "
                                   "--allow_high_snr trains anyway)")
    if snr > SNR_WARN:
        logging.warning("%s (warning level %s)", message, SNR_WARN)


@dataclasses.dataclass
class Run:
    """What `prepare_run` checked and made ready: the folder it trains in, the params (as saved
    there), the clip cache, the strategy, the checkpoint whose EMA weights start a fine-tuning
    run (or None), the dilated-convolution path and the line saying why, and the model dir's
    lock (an open file: the run holds the folder while it lives)."""
    model_dir: str
    params: params_lib.Params
    clip_cache: data.ClipCache
    strategy: tf.distribute.Strategy
    init_from: str | None
    dilated_conv: str
    dilated_conv_line: str
    lock: object


def prepare_run():
    """Every check of the flags and the model dir, in the order that refuses a mistake before
    minutes of preprocessing, then the clip cache; the params are saved in the model dir."""
    # First: threads and a multi-worker cluster can only be set before TensorFlow runs an op.
    cli.configure_runtime(FLAGS)
    strategy = runtime.make_strategy(FLAGS.strategy)
    cli.require_positive(FLAGS, "max_steps", "checkpoint_every", "log_every", "sample_every")
    if os.path.exists(FLAGS.model_dir) and not os.path.isdir(FLAGS.model_dir):
        raise params_lib.UserError(f"--model_dir={FLAGS.model_dir} is a file; give a folder")
    target = training.training_target(FLAGS.model_dir, FLAGS.init_from, FLAGS.stage)
    model_dir = target.model_dir
    params = resolve_params(model_dir, target.init_from)
    if params.upsample_from:
        check_upsampler(params)
        if not params.gain_rate:  # as loud as the stage below makes it (params.gain_rate)
            params = dataclasses.replace(params, gain_rate=params.upsample_from)
    check_labels(params, model_dir, target.init_from)
    training.check_replicas(params, strategy)
    check_precision(params)
    init_from = resume_or_init_from(params, model_dir, target.init_from)
    chief = runtime.is_chief(strategy)
    # One train.py per --model_dir: `lock`, an open file, holds it while the run lives; taken
    # before preprocessing when the folder exists.
    lock = checkpoints.lock_model_dir(model_dir) if chief and os.path.isdir(model_dir) else None
    clip_cache = data.prepare(params, FLAGS.data_dir, FLAGS.cache_dir)
    if FLAGS.labels == "folders" and not params.label_names:  # a new labelled model
        params = dataclasses.replace(
            params, label_names=tuple(clip_cache.manifest["label_names"]))
    check_schedule(Diffusion.from_params(params), clip_cache.manifest["train_variance"],
                   FLAGS.allow_high_snr)
    keras.utils.set_random_seed(FLAGS.seed)
    if chief:
        target.make_cascade()
    os.makedirs(model_dir, exist_ok=True)
    lock = lock or (checkpoints.lock_model_dir(model_dir) if chief else None)
    params.save(os.path.join(model_dir, "params.json"))
    if params.label_names:
        counts = clip_cache.manifest["label_clips"]
        util.write_json(os.path.join(model_dir, "labels.json"), counts)
        print("labels: " + ", ".join(f"{name} ({counts.get(name, 0)} clips)"
                                     for name in params.label_names), flush=True)
    dilated_conv, said = cli.dilated_conv(FLAGS, training=True)
    return Run(model_dir, params, clip_cache, strategy, init_from, dilated_conv, said, lock)


def check_labels(params, model_dir, init_from):
    """--labels=folders only on a new model; a labelled run's data in label folders."""
    resuming = os.path.exists(os.path.join(model_dir, "params.json"))
    if FLAGS.labels == "folders" and (resuming or init_from) and not params.label_names:
        source = f"--model_dir={model_dir}" if resuming else f"--init_from={init_from}"
        raise params_lib.UserError(
            f"--labels=folders: {source} holds an unconditional model, and labels would change "
            "its architecture; train a labelled model from scratch in a new --model_dir")
    if FLAGS.labels == "folders" or params.label_names:
        check_label_folders(FLAGS.data_dir, params.label_names)


def check_precision(params):
    if (FLAGS.precision == "mixed_float16" and params.dilation_cycle > 1
            and not tf.config.list_logical_devices("GPU")):
        raise params_lib.UserError(
            "--precision=mixed_float16 needs a GPU here: TensorFlow's CPU kernels cannot "
            "train dilated float16 convolutions; on CPU use --precision=mixed_bfloat16")


def resume_or_init_from(params, model_dir, init_from):
    """The checkpoint of `init_from` that starts a fresh run, or None: when model_dir has
    checkpoints (checked to fit `params`) the run resumes from them instead."""
    latest = checkpoints.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    if not latest:
        return init_checkpoint(params, init_from)
    check_checkpoint(params, latest, model_dir)  # before minutes of preprocessing
    if init_from:
        print(f"--init_from ignored: --model_dir={model_dir} has checkpoints; resuming",
              flush=True)
    return None


def train():
    run = prepare_run()
    print("\n".join(filter(None, [KERNELS[1], run.dilated_conv_line])), flush=True)
    trainer = training.Trainer(run.params, run.clip_cache, run.model_dir, run.strategy,
                               FLAGS.jit, run.dilated_conv, FLAGS.recompute, run.init_from)
    try:
        trainer.train(FLAGS.max_steps, FLAGS.seed, FLAGS.log_every, FLAGS.checkpoint_every,
                      FLAGS.sample_every)
    except training.Stopped as stop:
        print(stop, file=sys.stderr)
        sys.exit(stop.exit_code)


def main(argv):
    """The command with argv (`[program, flags...]`) in this process; returns its exit status."""
    return cli.main(train, FLAGS, argv, "interrupted; re-run the same command to resume from "
                    "the last checkpoint")


if __name__ == "__main__":
    cli.run(main)
