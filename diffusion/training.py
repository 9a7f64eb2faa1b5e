"""Training as a library of values, not flags: `Trainer` trains a DiffWave given plain
arguments (params, clip cache, model dir, strategy), `TrainingLog` writes TensorBoard beside it,
`with_training_noise` draws each batch's steps and noise, and `training_target` says where a
run trains when it fine-tunes one stage of a cascade (`Target`). train.py turns its flags into
these arguments, as generate.py does for diffusion/generation.py.
"""

import contextlib
import dataclasses
import math
import os
import signal
import time

import keras
import tensorflow as tf
from absl import logging
from tensorboard.plugins.hparams import api as hparams_api

import data
import params as params_lib
import util
from diffusion import generation, samplers
from diffusion.core import Diffusion
from network import DiffWave, checkpoints, runtime

SAMPLES_SHOWN = 2
MAX_ETA_S = 30 * 24 * 3600  # longer than a month: no ETA printed


def check_replicas(params, strategy):
    """The strategy's replica count, which must divide the global batch."""
    replicas = strategy.num_replicas_in_sync
    if params.batch_size % replicas:
        raise params_lib.UserError(
            f"--batch_size={params.batch_size} is not divisible by the {replicas} replicas of "
            f"the tf.distribute strategy ({type(strategy).__name__}); use a multiple of "
            f"{replicas}")
    return replicas


def with_training_noise(dataset, diffusion, seed, first_step, label_dropout=0.0, no_label=0,
                        condition_noise_max=0.0):
    """Adds each batch's diffusion steps and noise, drawn from (seed, step number) before the
    batch is split across replicas, so one device or several train on the same numbers and a
    resumed run draws, step for step, the noise an uninterrupted one would have. Labelled
    batches lose their labels (to `no_label`) with probability `label_dropout`, drawn alike.
    An upsampler's condition is noised by the forward process to a level drawn uniformly in
    [0, condition_noise_max] of the schedule (conditioning augmentation), drawn alike.

    Takes a dataset of {"audio": x0 [batch, time, 1][, "labels": int32 [batch]][, "condition":
    [batch, time, 1]]} and adds "steps" (float32 [batch]) and "noise" ([batch, time, 1]) to each
    batch, and with a condition its "condition_level" (float32 [batch]).
    """
    seed = tf.constant(seed, tf.int64)

    def add_noise(step, batch):
        pair = tf.stack([seed, step])
        steps, noise = diffusion.training_noise(batch["audio"], pair)
        batch = {**batch, "steps": steps, "noise": noise}
        if "labels" in batch:
            dropped = tf.random.stateless_uniform(
                tf.shape(batch["labels"]), tf.random.experimental.stateless_fold_in(pair, 1))
            batch["labels"] = tf.where(dropped < label_dropout, no_label, batch["labels"])
        if "condition" in batch:
            level_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(
                tf.random.experimental.stateless_fold_in(pair, 2), 2))
            level = tf.random.stateless_uniform(tf.shape(steps), level_seed,
                                                maxval=condition_noise_max)
            batch["condition"] = diffusion.noise_condition(
                batch["condition"], level,
                tf.random.stateless_normal(tf.shape(batch["condition"]), noise_seed))
            batch["condition_level"] = level
        return batch
    return dataset.enumerate(first_step).map(add_noise)


def spectrogram_images(audio, frame_length=256):
    """[batch, time, 1] audio -> [batch, freq, frames, 1] log-magnitude images in [0, 1].

    Audio shorter than one frame is padded to one (an empty image aborts the PNG encoder)."""
    audio = tf.pad(audio[..., 0], [[0, 0], [0, tf.maximum(0, frame_length - tf.shape(audio)[1])]])
    magnitude = tf.abs(tf.signal.stft(audio, frame_length=frame_length, frame_step=64))
    decibels = 20 * tf.math.log(magnitude + 1e-5) / math.log(10.0)
    image = tf.clip_by_value((decibels + 100.0) / 100.0, 0.0, 1.0)  # -100..0 dB
    return tf.reverse(tf.transpose(image, [0, 2, 1]), axis=[1])[..., None]  # low notes below


def hours(seconds):
    """Seconds as H:MM:SS."""
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


class TrainingLog:
    """TensorBoard for one run: its params (the HParams dashboard compares runs), scalars, and
    clips as audio and spectrograms. Only the chief writes; elsewhere nothing is written."""

    def __init__(self, model_dir, is_chief=True):
        self.writer = (tf.summary.create_file_writer(model_dir) if is_chief
                       else tf.summary.create_noop_writer())

    def params(self, params):
        with self.writer.as_default(step=0):
            hparams_api.hparams({**params.to_dict(),  # the dashboard takes no lists
                                 "label_names": ",".join(params.label_names)})

    def scalars(self, step, values):
        """`values`: {tag: number}, e.g. {"train/loss": 0.1}."""
        with self.writer.as_default(step=step):
            for tag, value in values.items():
                tf.summary.scalar(tag, value)

    def clips(self, step, clips, sample_rate):
        """`clips`: {name: audio [batch, time, 1]}, e.g. generated and real."""
        with self.writer.as_default(step=step):
            for name, audio in clips.items():
                tf.summary.audio(f"{name}/audio", audio, sample_rate, max_outputs=SAMPLES_SHOWN)
                tf.summary.image(f"{name}/spectrogram", spectrogram_images(audio),
                                 max_outputs=SAMPLES_SHOWN)

    def flush(self):
        self.writer.flush()


class Stopped(Exception):
    """A signal ended training; the step reached is in the checkpoint named."""

    def __init__(self, signal_number, step, checkpoint):
        super().__init__(f"stopped by {signal.Signals(signal_number).name} at step {step}; saved "
                         f"{checkpoint}; re-run the same command to resume")
        self.exit_code = 128 + signal_number  # what a shell reports for a signal


class Trainer:
    """Trains one model in `model_dir`: the network, its EMA copy, Adam, the step counter.

    Variables live under `strategy`'s scope; each global batch is split across its replicas.
    Only the chief writes checkpoints and summaries.
    """

    def __init__(self, params, clip_cache, model_dir, strategy=None, jit=False,
                 dilated_conv="auto", recompute=False, init_from=None):
        self.params = params
        self.init_from = init_from  # a checkpoint whose EMA weights start a fresh run
        self.diffusion = Diffusion.from_params(params)
        self.clip_cache = clip_cache
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = check_replicas(params, self.strategy)
        self.is_chief = runtime.is_chief(self.strategy)
        with self.strategy.scope():
            self.model = DiffWave(params, dilated_conv, recompute).build_for()
            self.ema = DiffWave(params, "direct").build_for()  # forward only: runs everywhere
            self.ema.set_weights(self.model.get_weights())
            adam = keras.optimizers.Adam(params.learning_rate)
            self.loss_scaling = keras.mixed_precision.dtype_policy().name == "mixed_float16"
            self.optimizer = (keras.optimizers.LossScaleOptimizer(adam) if self.loss_scaling
                              else adam)
            self.optimizer.build(self.model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        # Adam without the loss scale (it re-adapts in a few steps): a checkpoint resumes under
        # any --precision.
        self.checkpoints = checkpoints.RunCheckpoints(
            os.path.join(model_dir, "checkpoints"), self.is_chief,
            model=self.model, ema=self.ema, optimizer=adam, step=self.step)
        self.log = TrainingLog(model_dir, self.is_chief)
        self.generate = tf.function(self.ema, reduce_retracing=True)
        self.gradients = tf.function(self._gradients, jit_compile=True) if jit else self._gradients

    def restore(self):
        """Loads the latest checkpoint if there is one; returns the step reached."""
        if self.checkpoints.restore_latest():
            # A changed --learning_rate applies on resume; the checkpoint holds the old one.
            self.optimizer.learning_rate.assign(self.params.learning_rate)
        step = int(self.step.numpy())
        if self.replicas > 1 and self.steps_disagree(tf.constant(float(step))):
            raise params_lib.UserError(
                f"this worker resumes from step {step} but others from another step; every "
                "machine must see the same --model_dir (shared storage), see README")
        return step

    @tf.function
    def steps_disagree(self, step):
        """Whether the workers restored different steps (every worker gets the same answer)."""
        def deviation_across_replicas(value):
            value = tf.identity(value)  # a tensor of each replica's own, as all_reduce needs
            context = tf.distribute.get_replica_context()
            mean = context.all_reduce(tf.distribute.ReduceOp.MEAN, value)
            return context.all_reduce(tf.distribute.ReduceOp.MEAN, tf.abs(value - mean))
        results = self.strategy.experimental_local_results(
            self.strategy.run(deviation_across_replicas, (step,)))
        return results[0] > 0

    def loss(self, batch, model, training=False):
        """The mean loss of `model` on a batch of `with_training_noise`: x_t is the clean
        "audio" noised to its "steps" by its "noise"; from x_t the model predicts the
        diffusion's training_target (the noise, or v) (the other entries, labels and an
        upsampler's condition, go to it as they are)."""
        x_t = self.diffusion.q_sample(batch["audio"], batch["steps"], batch["noise"])
        inputs = {name: value for name, value in batch.items() if name != "noise"}
        predicted = model({**inputs, "audio": x_t}, training=training)
        target = self.diffusion.training_target(batch["audio"], batch["steps"], batch["noise"])
        return self.diffusion.loss(target, tf.cast(predicted, target.dtype))

    def _gradients(self, batch):
        """This replica's share of the global mean loss and its (loss-scaled) gradients."""
        with tf.GradientTape() as tape:
            loss = self.loss(batch, self.model, training=True)
            loss = loss / self.replicas  # the optimizer sums the replicas' gradients
            scaled = self.optimizer.scale_loss(loss)
        return loss, tape.gradient(scaled, self.model.trainable_variables)

    def _replica_step(self, batch):
        loss, gradients = self.gradients(batch)
        # The last layer's residual projection feeds nothing: no gradient.
        pairs = [(gradient, weight) for gradient, weight in
                 zip(gradients, self.model.trainable_variables) if gradient is not None]
        gradients, weights = [gradient for gradient, _ in pairs], [weight for _, weight in pairs]
        # Clip by the global gradient's norm: the sum over replicas (the optimizer forms it
        # again when it applies; at these sizes the second reduction costs little).
        total = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM,
                                                               gradients)
        norm = tf.linalg.global_norm(total) / self.optimizer.scale_loss(1.0)
        # A non-finite norm poisons every gradient: with loss scaling that step is skipped.
        factor = tf.where(tf.math.is_finite(norm),
                          tf.minimum(1.0, self.params.gradient_clip / norm), float("nan"))
        self.optimizer.apply([gradient * factor for gradient in gradients], weights)
        return loss, norm

    @tf.function
    def train_step(self, batch):
        """One Adam step on a distributed batch of `with_training_noise`; returns (global mean
        loss, gradient norm before clipping)."""
        losses, norms = self.strategy.run(self._replica_step, args=(batch,))
        # Warm-up (tf.train.ExponentialMovingAverage's num_updates): the average forgets the
        # random initial weights within a few hundred steps, so early checkpoints generate;
        # the decay reaches ema_decay after 9 / (1 - ema_decay) steps.
        update = tf.cast(self.step + 1, tf.float32)  # this step's number: self.step is the last
        decay = tf.minimum(self.params.ema_decay, (1 + update) / (10 + update))
        for average, weight in zip(self.ema.trainable_variables, self.model.trainable_variables):
            average.assign(decay * average + (1 - decay) * weight)
        loss = self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)
        return loss, self.strategy.experimental_local_results(norms)[0]

    @tf.function
    def val_step(self, batch, seed):
        steps, noise = self.diffusion.training_noise(batch["audio"], seed)
        return self.loss({**batch, "steps": steps, "noise": noise}, self.model)

    def val_loss(self):
        """Mean loss per clip over a fixed subset of the validation clips (with their labels),
        with fixed t and noise (comparable over time); a short last batch weighs by its size."""
        total = count = 0.0
        for index, batch in enumerate(data.val_dataset(self.clip_cache, self.params)):
            size = len(batch["audio"])
            total += float(self.val_step(batch, tf.constant([index, 7]))) * size
            count += size
        return total / count if count else None

    def tensorboard_clips(self, step, batch):
        """{name: [n, time, 1]} for TensorBoard: clips generated with the EMA weights (DDIM,
        seed `step`) beside real ones from `batch`. A labelled model's are of its first labels,
        one per clip; an upsampler's upsample the clean low bands of the first validation
        clips, shown beside them ("condition") and the clips themselves ("real")."""
        real = self.strategy.experimental_local_results(batch["audio"])[0][:SAMPLES_SHOWN]
        inputs, clips = {}, {"real": real}
        if self.params.upsample_from:
            clips = next(iter(data.val_dataset(self.clip_cache, self.params, SAMPLES_SHOWN)))
            clips = {"real": clips["audio"], "condition": clips["condition"]}
            inputs["condition"] = clips["condition"]
        count = len(clips["real"])
        if self.ema.no_label:
            inputs["labels"] = tf.range(count) % self.ema.no_label
        generated = samplers.ddim(
            self.diffusion, lambda x, t: self.diffusion.eps_from_output(
                x, t, self.generate({**inputs, "audio": x, "steps": t})),
            [count, *clips["real"].shape[1:]], self.params.sample_steps, seed=step)
        return {"generated": tf.clip_by_value(generated, -1.0, 1.0), **clips}

    def train(self, max_steps, seed, log_every=50, checkpoint_every=1000, sample_every=5000):
        """Trains to max_steps: a progress line and scalars every `log_every` steps, a
        checkpoint and the validation loss every `checkpoint_every`, clips every
        `sample_every`. SIGINT and SIGTERM end the run after the current step, which is saved
        first (raises Stopped)."""
        start = self.start()
        if start >= max_steps:
            print(f"already at step {start} >= --max_steps={max_steps}; nothing to do")
            return
        batches = self.batches(seed, start)
        throughput = Throughput()
        with stop_signals() as signals:
            for step in range(start + 1, max_steps + 1):
                batch = next(batches)
                self.warm_up(step)
                loss, norm = self.checked(step, *self.train_step(batch))
                self.step.assign(step)
                throughput.count()
                last = step == max_steps
                # The first two steps are shown at once: the first (tracing included) says the
                # run has started, the second how long a step takes.
                if step % log_every == 0 or last or step - start <= 2:
                    self.log_progress(step, max_steps, loss, norm, throughput.read(),
                                      tracing=step == start + 1)
                saved = step % checkpoint_every == 0 or last
                if saved:
                    self.save_and_validate(step)
                if step % sample_every == 0 or last:
                    self.log_clips(step, batch)
                self.log.flush()
                if signals:
                    if not saved:
                        self.checkpoints.save(step)
                    raise Stopped(signals[0], step, self.checkpoints.latest)

    # --- the pieces of the loop, in the order it runs them

    def start(self):
        """Resumes from the latest checkpoint, or starts from --init_from's EMA weights or
        afresh (then logs the params for TensorBoard's HParams); returns the step reached."""
        start = self.restore()
        if start:
            print(f"resuming from step {start} ({self.checkpoints.latest})", flush=True)
        elif self.init_from:
            checkpoints.restore(self.init_from, ema=self.model)
            self.ema.set_weights(self.model.get_weights())
            print(f"starting from the EMA weights of {self.init_from}; step counter and "
                  "optimiser fresh", flush=True)
        if start == 0:
            self.log.params(self.params)
        return start

    def batches(self, seed, start):
        """An iterator of distributed training batches (`with_training_noise`) from step
        `start` + 1 on."""
        dataset = with_training_noise(
            data.train_dataset(self.clip_cache, self.params, seed=seed + start), self.diffusion,
            seed, start, self.params.label_dropout, self.model.no_label,
            self.params.condition_noise_max)
        options = tf.data.Options()  # clips come from one cache file: shard batches, not files
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        return iter(self.strategy.experimental_distribute_dataset(dataset.with_options(options)))

    def warm_up(self, step):
        """The learning rate rises linearly over the warm-up steps, then stays."""
        if step <= self.params.warmup_steps:
            self.optimizer.learning_rate.assign(
                self.params.learning_rate * step / self.params.warmup_steps)

    def checked(self, step, loss, norm):
        """(loss, norm) as floats; UserError when they are not finite, except a float16
        overflow that loss scaling has already skipped."""
        loss, norm = float(loss), float(norm)
        if not math.isfinite(norm) and self.loss_scaling and math.isfinite(loss):
            logging.info("step %d: gradients overflowed float16; skipped, loss scale halved",
                         step)
        elif not (math.isfinite(loss) and math.isfinite(norm)):
            raise params_lib.UserError(
                f"loss became {loss} (gradient norm {norm}) at step {step}; stopped without "
                f"saving, the last good checkpoint ({self.checkpoints.latest}) is "
                "intact; lower --learning_rate or --gradient_clip and re-run to resume")
        return loss, norm

    def log_progress(self, step, max_steps, loss, norm, steps_per_s, tracing=False):
        """One progress line on the terminal and the training scalars in TensorBoard."""
        audio_per_s = steps_per_s * (self.params.batch_size * data.training_samples(self.params)
                                     / self.params.sample_rate)
        self.log.scalars(step, {
            "train/loss": loss, "train/gradient_norm": norm,
            "train/learning_rate": float(self.optimizer.learning_rate.numpy()),
            "train/steps_per_s": steps_per_s, "train/audio_seconds_per_s": audio_per_s})
        remaining = (max_steps - step) / steps_per_s
        # A --max_steps far beyond any run (stopped by a signal instead) has no ETA to show.
        eta = ("  (tracing included)" if tracing
               else f"  ETA {hours(remaining)}" if remaining <= MAX_ETA_S else "")
        print(f"step {step}/{max_steps}  loss {loss:.4f}  {steps_per_s:.2f} steps/s  "
              f"{audio_per_s:.1f} audio s/s  {1 / steps_per_s:.2f} s/step{eta}", flush=True)

    def save_and_validate(self, step):
        self.checkpoints.save(step)
        val = self.val_loss()
        if val is not None:
            self.log.scalars(step, {"val/loss": val})

    def log_clips(self, step, batch):
        if self.is_chief:
            self.log.clips(step, self.tensorboard_clips(step, batch), self.params.sample_rate)


class Throughput:
    """Steps per second between readings."""

    def __init__(self):
        self.started, self.steps = time.perf_counter(), 0

    def count(self):
        self.steps += 1

    def read(self):
        """Steps per second since the last reading (or the start); starts a new window."""
        now = time.perf_counter()
        rate = self.steps / (now - self.started)
        self.started, self.steps = now, 0
        return rate


@contextlib.contextmanager
def stop_signals():
    """Within it, SIGINT and SIGTERM are recorded (yields the list of their numbers) instead of
    ending the process, so the loop can save and stop after the step it is in."""
    received = []
    handlers = {number: signal.signal(number, lambda number, _: received.append(number))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)


@dataclasses.dataclass
class Target:
    """Where a run trains: `model_dir` (--model_dir, or the stage's folder in it when it is a
    cascade) and `init_from` (the folder whose weights start it: --init_from, or its stage's
    folder). Fine-tuning a cascade also names `cascade` (--model_dir) and `stages` (its stages'
    folder names, each with the --init_from stage it starts from): `make_cascade` writes the
    cascade there, copying the stages it does not train."""
    model_dir: str
    init_from: str | None
    cascade: str | None = None
    stages: dict = dataclasses.field(default_factory=dict)

    def make_cascade(self):
        """Writes --model_dir's cascade.json and copies of the stages it does not train."""
        if not self.cascade or generation.is_cascade(self.cascade):
            return
        for name, source in self.stages.items():
            copy = os.path.join(self.cascade, name)
            if copy != self.model_dir and not os.path.isdir(copy):  # not copied by a killed run
                checkpoints.copy_model(source, copy)
        util.write_json(os.path.join(self.cascade, generation.CASCADE_FILE),
                        {"stages": list(self.stages)})


def local_stages(cascade):
    """{folder name in a fine-tuned copy: stage folder} of a cascade, lowest rate first: a
    stage beside its cascade.json keeps its name, one elsewhere becomes stageN."""
    names = generation.stage_names(cascade)
    beside = [os.path.basename(name) == name and name not in (".", "..") for name in names]
    return {name if plain else f"stage{number}": folder for number, (name, plain, folder) in
            enumerate(zip(names, beside, generation.stage_dirs(cascade)), 1)}


def chosen_stage(stage, names, flag):
    """--stage, or the first stage when it is left out; UserError when it is not in names."""
    if stage and stage not in names:
        raise params_lib.UserError(f"--stage={stage}: {flag} has the stages "
                                   f"{', '.join(names)}; give one of them")
    return stage or names[0]


def training_target(model_dir, init_from, stage):
    """The Target of --model_dir, --init_from and --stage; UserError for a --stage that is not
    one of the cascade's, or for fine-tuning a cascade into a folder that holds another model."""
    if init_from and generation.is_cascade(init_from):
        stages = local_stages(init_from)
        stage = chosen_stage(stage, list(stages), f"--init_from={init_from}")
        if generation.is_cascade(model_dir):
            if generation.stage_names(model_dir) != list(stages):
                raise params_lib.UserError(
                    f"--model_dir={model_dir} is a cascade of other stages "
                    f"({', '.join(generation.stage_names(model_dir))}) than --init_from="
                    f"{init_from}; give a new --model_dir")
        elif os.path.exists(os.path.join(model_dir, "params.json")):
            raise params_lib.UserError(
                f"--model_dir={model_dir} holds a single model; fine-tuning the cascade "
                f"--init_from={init_from} makes a cascade: give a new --model_dir")
        return Target(os.path.join(model_dir, stage), stages[stage], model_dir, stages)
    if generation.is_cascade(model_dir):
        stage = chosen_stage(stage, generation.stage_names(model_dir), f"--model_dir={model_dir}")
        return Target(os.path.join(model_dir, stage), init_from)
    if stage:
        raise params_lib.UserError(f"--stage={stage} names a stage of a cascade, but neither "
                                   f"--model_dir={model_dir} nor --init_from is one (no "
                                   f"{generation.CASCADE_FILE}); drop --stage")
    return Target(model_dir, init_from)


