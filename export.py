"""Exports a model trained by train.py as a TensorFlow SavedModel, for TensorFlow Serving or
any TensorFlow program, with no code of this project needed to run it.

  python export.py --model_dir=runs/gtzan --output=exported/gtzan/1

Signatures (EMA weights, the fast sampler's plan baked in):
  generate(seed int64 [], samples int32 []) -> audio float32 [samples] in [-1, 1] at the model's
    rate: what `generate.py --seed=SEED --samples=SAMPLES` writes as its first file (before
    16-bit rounding), for the same --fast_schedule.
  denoise(x_t float32 [batch, time, 1], step float32 [batch]) -> the predicted noise eps: one
    network evaluation at a (fractional) training step, for samplers of your own.

A model trained with --labels=folders takes its label too:
  generate(seed, samples, label string [], guidance float32 []): generate.py --label=LABEL
    --guidance=GUIDANCE (label "" for none); an unknown label is an error.
  denoise(x_t, step, label int32 [batch]): an index into label_names(), or its length for none.
  label_names() -> string [labels].

A cascade (a --model_dir with cascade.json) exports generate alone, which runs every stage
(each its fast plan) and returns audio at the top stage's rate.
"""

import os

from absl import flags

import cli

cli.quiet_tensorflow()  # (no kernel choice: the export runs no network step)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from diffusion import generation, samplers  # noqa: E402
from params import UserError  # noqa: E402

FLAGS = flags.FlagValues()
flags.DEFINE_string("model_dir", "runs/default", "The --model_dir that train.py wrote.",
                    flag_values=FLAGS)
flags.DEFINE_string("checkpoint", None, "A checkpoint to export instead of the latest (as "
                    "generate.py's --checkpoint).", flag_values=FLAGS)
flags.DEFINE_string("output", None, "A new folder for the SavedModel (TensorFlow Serving "
                    "expects MODEL_NAME/VERSION, e.g. exported/gtzan/1).", flag_values=FLAGS)
flags.DEFINE_list("fast_schedule", [str(beta) for beta in samplers.FAST_SCHEDULE],
                  "Inference betas of the baked-in fast sampler, comma separated.",
                  flag_values=FLAGS)


def saved_model(model):
    """A keras.export.ExportArchive of `model` (a generation.Stage or Cascade of unwindowed
    stages, labelled or not) with the signatures above."""
    archive = keras.export.ExportArchive()
    for stage in model.stages:
        archive.track(stage.network)
    sketch, label_names = model.stages[0].network, model.stages[0].params.label_names
    names = tf.constant(label_names or [""])
    signature = [tf.TensorSpec([], tf.int64, name="seed"),
                 tf.TensorSpec([], tf.int32, name="samples")]
    noisy = [tf.TensorSpec([None, None, 1], tf.float32, name="x_t"),
             tf.TensorSpec([None], tf.float32, name="step")]
    denoise = lambda x_t, step: sketch({"audio": x_t, "steps": step})  # noqa: E731
    if label_names:
        signature += [tf.TensorSpec([], tf.string, name="label"),
                      tf.TensorSpec([], tf.float32, name="guidance")]
        noisy.append(tf.TensorSpec([None], tf.int32, name="label"))
        denoise = lambda x_t, step, label: sketch(  # noqa: E731
            {"audio": x_t, "steps": step, "labels": label})

    def generate(seed, samples, label=None, guidance=1.0):
        index = None
        if label is not None:
            matches = tf.cast(tf.where(tf.equal(names, label))[:, 0], tf.int32)
            tf.debugging.assert_equal(tf.size(matches) + tf.cast(tf.equal(label, ""), tf.int32),
                                      1, message="unknown label; see label_names()")
            index = tf.concat([matches, [sketch.no_label]], 0)[0]
        audio = model.generate(1, samples, seed, 0, index, guidance)
        return tf.clip_by_value(audio[0, :, 0], -1.0, 1.0)

    archive.add_endpoint("generate", generate, input_signature=signature)
    if len(model.stages) == 1:
        archive.add_endpoint("denoise", denoise, input_signature=noisy)
    if label_names:
        archive.add_endpoint("label_names", lambda: names, input_signature=[])
    return archive


def export():
    if not FLAGS.output:
        raise UserError("--output is required: a new folder for the SavedModel")
    if os.path.exists(FLAGS.output):
        raise UserError(f"--output={FLAGS.output} exists; give a new folder (nothing is "
                        "overwritten)")
    folders = [FLAGS.model_dir]
    if generation.is_cascade(FLAGS.model_dir):
        if FLAGS.checkpoint:
            raise UserError(f"--checkpoint picks one model's checkpoint; --model_dir="
                            f"{FLAGS.model_dir} is a cascade, exported from its stages' latest")
        folders = generation.stage_dirs(FLAGS.model_dir)
    betas = cli.fast_schedule(FLAGS)
    # No windows: the graph takes any length at once.
    stages = [generation.Stage.load(folder, FLAGS.checkpoint, window=None, plan=lambda params, _:
                                    generation.make_plan(params, "fast", fast_schedule=betas))
              for folder in folders]
    model = (generation.Cascade(stages, [os.path.relpath(folder) for folder in folders])
             if len(stages) > 1 else stages[0])
    saved_model(model).write_out(FLAGS.output, verbose=False)
    label_names = stages[0].params.label_names
    signatures = ["generate"] + (["denoise"] if len(stages) == 1 else [])
    signatures += ["label_names"] if label_names else []
    labels = f"; labels {', '.join(label_names)}" if label_names else ""
    print(f"wrote {FLAGS.output} from {model.checkpoint} (signatures: "
          f"{', '.join(signatures)}{labels})")


def main(argv):
    """The command with argv (`[program, flags...]`) in this process; returns its exit status."""
    return cli.main(export, FLAGS, argv, "interrupted; remove the partial --output folder")


if __name__ == "__main__":
    cli.run(main)
