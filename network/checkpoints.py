"""Finding a trained model in a --model_dir and loading its weights, refusing any mismatch.

A model dir holds `params.json` (JSON, the architecture) and `checkpoints/` (TensorFlow
checkpoints with `model`, `ema`, `optimizer` and `step`); nothing else is read, and nothing
there is executed or unpickled.
"""

import os

import numpy as np
import tensorflow as tf
from google.protobuf import message
from tensorflow.core.protobuf import trackable_object_graph_pb2

import params as params_lib
from network.diffwave import DiffWave
from params import UserError, first_line


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
    latest = tf.train.latest_checkpoint(folder) if os.path.isdir(folder) else None
    if latest is None:
        raise UserError(f"--model_dir={model_dir} has no checkpoint yet; train first with "
                        f"python train.py --model_dir={model_dir}")
    return latest


def load_model(params, checkpoint, ema=True):
    """A DiffWave built from params with the EMA (or raw) weights of `checkpoint`."""
    model = DiffWave(params).build_for()
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
    graph = _object_graph(checkpoint)
    mismatch = f"{checkpoint} holds a network that does not match params.json"
    for role, network in objects.items():
        if isinstance(network, DiffWave):
            count = _saved_variables(graph, role)
            if count != len(network.weights):
                raise UserError(f"{mismatch} ({count} {role} weights saved, "
                                f"{len(network.weights)} expected); use the params.json it was "
                                "trained with, or a new --model_dir")
    try:
        tf.train.Checkpoint(**objects).restore(checkpoint).expect_partial() \
            .assert_existing_objects_matched()
    except (AssertionError, IndexError, ValueError, tf.errors.OpError) as error:
        raise UserError(f"{mismatch} ({first_line(error)[:200]}); use the params.json it was "
                        "trained with, or a new --model_dir") from None


def _object_graph(checkpoint):
    """The checkpoint's object graph: what was saved under which attribute."""
    try:
        serialized = tf.train.load_checkpoint(checkpoint).get_tensor(
            "_CHECKPOINTABLE_OBJECT_GRAPH")
        graph = trackable_object_graph_pb2.TrackableObjectGraph()
        graph.ParseFromString(serialized)
        return graph
    except (IndexError, ValueError, tf.errors.OpError, message.DecodeError) as error:
        raise UserError(f"cannot read checkpoint {checkpoint} ({first_line(error)[:200]}); it "
                        "may be truncated: pick another with --checkpoint") from None


def _saved_variables(graph, role):
    """How many variables hang below the root's child `role` (a variable reached by two paths,
    as the optimizer also references the model's, is saved once but counted here too)."""
    children = [child.node_id for child in graph.nodes[0].children if child.local_name == role]
    seen = set()
    while children:
        node = children.pop()
        if node not in seen:
            seen.add(node)
            children.extend(child.node_id for child in graph.nodes[node].children)
    return sum(any(attribute.name == "VARIABLE_VALUE" for attribute in graph.nodes[node].attributes)
               for node in seen)
