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


def saved_model(model, plan, label_names=()):
    """A keras.export.ExportArchive of `model` (a DiffWave, labelled by `label_names` or not)
    with the signatures above."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    seed_and_samples = [tf.TensorSpec([], tf.int64, name="seed"),
                        tf.TensorSpec([], tf.int32, name="samples")]
    noisy = [tf.TensorSpec([None, None, 1], tf.float32, name="x_t"),
             tf.TensorSpec([None], tf.float32, name="step")]

    def generate(seed, samples, denoise):
        audio = samplers.sample(plan, denoise, [1, samples, 1], samplers.example_noise(seed, 0))
        return tf.clip_by_value(audio[0, :, 0], -1.0, 1.0)

    if not label_names:
        archive.add_endpoint("generate", lambda seed, samples: generate(
            seed, samples, samplers.denoiser(model)), input_signature=seed_and_samples)
        archive.add_endpoint("denoise", lambda x_t, step: model({"audio": x_t, "steps": step}),
                             input_signature=noisy)
        return archive
    names = tf.constant(label_names)

    def labelled_generate(seed, samples, label, guidance):
        matches = tf.cast(tf.where(tf.equal(names, label))[:, 0], tf.int32)
        tf.debugging.assert_equal(tf.size(matches) + tf.cast(tf.equal(label, ""), tf.int32), 1,
                                  message="unknown label; see label_names()")
        index = tf.concat([matches, [model.no_label]], 0)[0]
        return generate(seed, samples, samplers.denoiser(model, index, model.no_label, guidance))

    archive.add_endpoint("generate", labelled_generate, input_signature=seed_and_samples + [
        tf.TensorSpec([], tf.string, name="label"),
        tf.TensorSpec([], tf.float32, name="guidance")])
    archive.add_endpoint("denoise", lambda x_t, step, label: model(
        {"audio": x_t, "steps": step, "labels": label}),
        input_signature=noisy + [tf.TensorSpec([None], tf.int32, name="label")])
    archive.add_endpoint("label_names", lambda: names, input_signature=[])
    return archive


def export():
    if not FLAGS.output:
        raise UserError("--output is required: a new folder for the SavedModel")
    if os.path.exists(FLAGS.output):
        raise UserError(f"--output={FLAGS.output} exists; give a new folder (nothing is "
                        "overwritten)")
    stage = generation.Stage.load(FLAGS.model_dir, FLAGS.checkpoint)
    plan = generation.make_plan(stage.params, "fast", fast_schedule=cli.fast_schedule(FLAGS))
    label_names = stage.params.label_names
    saved_model(stage.network, plan, label_names).write_out(FLAGS.output, verbose=False)
    labels = f", label_names; labels {', '.join(label_names)}" if label_names else ""
    print(f"wrote {FLAGS.output} from {stage.checkpoint} (signatures: generate, "
          f"denoise{labels})")


def main(argv):
    """The command with argv (`[program, flags...]`) in this process; returns its exit status."""
    return cli.main(export, FLAGS, argv, "interrupted; remove the partial --output folder")


if __name__ == "__main__":
    cli.run(main)
