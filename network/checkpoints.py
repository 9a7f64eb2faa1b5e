"""Finding a trained model in a --model_dir and loading its weights, refusing any mismatch.

A model dir holds `params.json` (JSON, the architecture) and `checkpoints/` (TensorFlow
checkpoints with `model`, `ema`, `optimizer` and `step`); nothing else is read, and nothing
there is executed or unpickled.
"""

import fcntl
import glob
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import logging
from google.protobuf import message
from tensorflow.core.protobuf import trackable_object_graph_pb2

import params as params_lib
from network.diffwave import DiffWave
from util import UserError, first_line


def load_params(model_dir):
    """params.json of a model dir; UserError when the dir or the file is missing."""
    if not os.path.isdir(model_dir):
        raise UserError(f"--model_dir={model_dir} is not a folder; give the --model_dir that "
                        "train.py wrote")
    path = os.path.join(model_dir, "params.json")
    if not os.path.exists(path):
        raise UserError(f"--model_dir={model_dir} has no params.json; train first with "
                        f"python train.py --model_dir={model_dir}")
    return params_lib.Params.load(path)


def complete_checkpoints(folder):
    """Prefixes of the complete checkpoints (index and every data shard) in `folder`, by step."""
    found = []
    for index in glob.glob(os.path.join(glob.escape(folder), "ckpt-*.index")):
        prefix = index[:-len(".index")]
        step = prefix.rsplit("-", 1)[1]
        shards = glob.glob(glob.escape(prefix) + ".data-*-of-*")
        if step.isdigit() and shards and len(shards) == int(shards[0].rsplit("-of-", 1)[1]):
            found.append((int(step), prefix))
    return [prefix for _, prefix in sorted(found)]


def _named_in_index(folder):
    """The checkpoint `folder`'s index file (`checkpoint`) names; None when it is missing, empty
    or garbled."""
    try:
        return tf.train.latest_checkpoint(folder)
    except (ValueError, tf.errors.OpError):
        return None


def latest_checkpoint(folder):
    """The checkpoint that `folder`'s index file names when it is complete, else the newest
    complete one on disk, else None: a missing, empty or garbled index, or one that names a
    deleted checkpoint, loses nothing."""
    named = _named_in_index(folder)
    on_disk = complete_checkpoints(folder)
    if named is not None and os.path.abspath(named) in map(os.path.abspath, on_disk):
        return named
    return on_disk[-1] if on_disk else None


def copy_model(source, target):
    """Copies what generating from model dir `source` needs, its params.json and its latest
    checkpoint, into a new model dir `target` (written beside it and renamed into place)."""
    latest = latest_checkpoint(os.path.join(source, "checkpoints"))
    if latest is None:
        raise UserError(f"{source} holds no checkpoint; give a model dir that train.py wrote")
    partial = f"{target}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # what an interrupted copy left
    os.makedirs(os.path.join(partial, "checkpoints"))
    shutil.copy(os.path.join(source, "params.json"), partial)
    for path in glob.glob(glob.escape(latest) + ".*"):
        shutil.copy(path, os.path.join(partial, "checkpoints"))
    os.rename(partial, target)


def repair_index(folder):
    """Rewrites `folder`'s index file when it does not name the checkpoint `latest_checkpoint`
    finds, so that tf.train.CheckpointManager resumes from it (and rotates the ones on disk)
    instead of starting over. Returns a sentence saying what was repaired, or None."""
    latest, named = latest_checkpoint(folder), _named_in_index(folder)
    if latest is None or named == latest:
        return None
    what = ("missing" if not os.path.exists(os.path.join(folder, "checkpoint"))
            else "unreadable" if named is None else f"naming the deleted {named}")
    # The index is a CheckpointState text proto; written under a temporary name, then renamed.
    names = [os.path.basename(prefix) for prefix in complete_checkpoints(folder)]
    text = "".join([f'model_checkpoint_path: "{os.path.basename(latest)}"\n'] +
                   [f'all_model_checkpoint_paths: "{name}"\n' for name in names])
    index = os.path.join(folder, "checkpoint")
    with open(f"{index}.tmp-{os.getpid()}", "w") as f:
        f.write(text)
    os.replace(f"{index}.tmp-{os.getpid()}", index)
    return f"{folder}/checkpoint was {what}; resuming from {latest}, the newest complete one"


def find_checkpoint(model_dir, checkpoint=None):
    """The checkpoint prefix to load: `checkpoint` (a path, or a name like ckpt-30 inside
    model_dir/checkpoints) or else the latest one."""
    folder = os.path.join(model_dir, "checkpoints")
    if checkpoint:
        for prefix in (checkpoint, os.path.join(folder, checkpoint)):
            if os.path.exists(prefix + ".index"):
                return prefix
        raise UserError(f"--checkpoint={checkpoint} not found (no {checkpoint}.index, nor in "
                        f"{folder}); leave it out for the latest")
    latest = latest_checkpoint(folder) if os.path.isdir(folder) else None
    if latest is None:
        raise UserError(f"--model_dir={model_dir} has no checkpoint yet; train first with "
                        f"python train.py --model_dir={model_dir}")
    return latest


def load_latest(params, model_dir, checkpoint=None, ema=True, dilated_conv="direct",
                attempts=5):
    """(model, checkpoint) as find_checkpoint and load_model give them. Without `checkpoint`,
    a checkpoint that a running train.py deletes while it is being read is not an error:
    the newest one is tried instead."""
    for attempt in range(attempts):
        found = find_checkpoint(model_dir, checkpoint)
        try:
            return load_model(params, found, ema, dilated_conv), found
        except UserError:
            rotated = not os.path.exists(found + ".index") or found not in complete_checkpoints(
                os.path.dirname(found))
            if checkpoint or not rotated or attempt == attempts - 1:
                raise
            time.sleep(0.1)


LOCK_NAME = ".train.lock"


def lock_model_dir(model_dir):
    """Holds model_dir for this process: the returned open file keeps an exclusive flock, which
    the kernel drops when the process ends, however it ends (a killed run leaves no stale lock).
    UserError when another process holds it or the folder cannot be written."""
    path = os.path.join(model_dir, LOCK_NAME)
    try:
        handle = open(path, "a+")
    except OSError as error:
        raise UserError(f"--model_dir={model_dir} cannot be written ({error.strerror}); give a "
                        "writable folder") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(f"--model_dir={model_dir} is being trained by {holder}; wait for it to "
                        "end or stop it, or give another --model_dir") from None
    handle.truncate(0)
    handle.write(f"train.py, process {os.getpid()}")
    handle.flush()
    return handle


def load_model(params, checkpoint, ema=True, dilated_conv="direct"):
    """A DiffWave for generation (forward only: direct dilated convolutions run everywhere)
    built from params with the EMA (or raw) weights of `checkpoint`."""
    model = DiffWave(params, dilated_conv).build_for()
    restore(checkpoint, **{"ema" if ema else "model": model})
    for weight in model.weights:
        if not np.isfinite(weight.numpy()).all():
            raise UserError(f"{checkpoint} holds NaN or infinite weights ({weight.path}); pick "
                            "an earlier one with --checkpoint")
    return model


def restore(checkpoint, **objects):
    """Restores the named objects (e.g. model=, ema=, optimizer=, step=) from `checkpoint`.

    Raises UserError, keeping nothing half-loaded in a network, unless every network's weights
    match the checkpoint's in number, name and shape.
    """
    reader, graph = _open(checkpoint)
    mismatch = f"{checkpoint} holds a network that does not match params.json"
    for role, network in objects.items():
        if isinstance(network, DiffWave):
            # Compared before restoring: a failed restore leaves TensorFlow warning at length.
            saved = _saved_shapes(reader, graph, role)
            wanted = sorted(tuple(weight.shape) for weight in network.weights)
            if saved != wanted:
                raise UserError(f"{mismatch} ({len(saved)} {role} weights saved, {len(wanted)} "
                                f"expected{', of other shapes' if len(saved) == len(wanted) else ''}"
                                "); use the params.json it was trained with, or a new --model_dir")
    try:
        tf.train.Checkpoint(**objects).restore(checkpoint).expect_partial() \
            .assert_existing_objects_matched()
    except (AssertionError, IndexError, ValueError, tf.errors.OpError) as error:
        raise UserError(f"{mismatch} ({first_line(error)[:200]}); use the params.json it was "
                        "trained with, or a new --model_dir") from None


def _open(checkpoint):
    """The checkpoint's reader and object graph (what was saved under which attribute)."""
    try:
        reader = tf.train.load_checkpoint(checkpoint)
        graph = trackable_object_graph_pb2.TrackableObjectGraph()
        graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
        return reader, graph
    except (IndexError, ValueError, tf.errors.OpError, message.DecodeError) as error:
        raise UserError(f"cannot read checkpoint {checkpoint} ({first_line(error)[:200]}); it "
                        "may be truncated: move its files away (train.py then resumes from the "
                        "one before; generate.py can also pick one with --checkpoint)") from None


def _saved_shapes(reader, graph, role):
    """Sorted shapes of the variables below the root's child `role` (a variable the optimizer
    also references is saved once, under whichever path came first, but found here too)."""
    shapes = reader.get_variable_to_shape_map()
    children = [child.node_id for child in graph.nodes[0].children if child.local_name == role]
    seen = set()
    while children:
        node = children.pop()
        if node not in seen:
            seen.add(node)
            children.extend(child.node_id for child in graph.nodes[node].children)
    return sorted(tuple(shapes[attribute.checkpoint_key]) for node in seen
                  for attribute in graph.nodes[node].attributes
                  if attribute.name == "VARIABLE_VALUE")


class RunCheckpoints:
    """The checkpoints of one training run in `folder`: tf.train.CheckpointManager (keeps the
    last 3) over `objects` (e.g. model=, ema=, optimizer=, step=), with a broken index repaired
    first and failed writes reported as UserError. Only the chief (`is_chief`) keeps what it
    writes; the other workers of a cluster take part in each save (as tf.distribute asks) and
    discard theirs."""

    def __init__(self, folder, is_chief=True, **objects):
        self.objects, self.is_chief = objects, is_chief
        self.checkpoint = tf.train.Checkpoint(**objects)
        repaired = repair_index(folder) if is_chief else None
        if repaired:
            logging.warning(repaired)
        self.manager = tf.train.CheckpointManager(self.checkpoint, folder, max_to_keep=3)

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def restore_latest(self):
        """Loads the latest checkpoint into the objects; False when there is none."""
        if self.latest is None:
            return False
        restore(self.latest, **self.objects)
        return True

    def save(self, step):
        """Writes the checkpoint of `step`; UserError (the previous ones intact) when it cannot
        be written: TensorFlow writes it under a temporary name and renames it."""
        if not self.is_chief:
            with tempfile.TemporaryDirectory(prefix="worker-checkpoint-") as scratch:
                self.checkpoint.write(os.path.join(scratch, "ckpt"))
            return
        try:
            logging.info("saved %s", self.manager.save(checkpoint_number=step))
        except (OSError, tf.errors.OpError) as error:
            for scratch in glob.glob(os.path.join(glob.escape(self.manager.directory),
                                                  f"ckpt-{step}_temp*")):
                shutil.rmtree(scratch, ignore_errors=True)  # TensorFlow's half-written one
            raise UserError(
                f"cannot save the checkpoint of step {step} in {self.manager.directory} "
                f"({first_line(error)[:200]}); free space or fix the folder, then re-run to "
                f"resume from {self.latest or 'the start'}") from None
