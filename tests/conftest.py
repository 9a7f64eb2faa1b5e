"""Shared helpers: tests make their own audio in temporary folders, and run the commands either
in this process (`command`) or, where the process itself is the subject, as one (`run`)."""

import contextlib
import fcntl
import importlib
import io
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import soundfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# Twelve 4 s excerpts of the soundtracks, committed (tests/music/README.md: sources, licences).
TEST_MUSIC = os.path.join(ROOT, "tests", "music")

import cli  # noqa: E402
import params as params_lib  # noqa: E402

# As every command does first: TensorFlow's C++ start-up lines would land in what tests capture.
cli.quiet_tensorflow()

# What every training run in the tests trains: the tiny preset on a few built-in tones, cut to
# two residual layers (dilations 1 and 2), because tracing a training step costs about a second
# per layer and is most of a short run's time.
TINY = ["--preset=tiny", "--synthetic_tones=32", "--residual_layers=2"]


def tone(seconds, rate, frequency=440.0, amplitude=0.5, channels=1):
    """A sine, float32 [time] or [time, channels]."""
    time = np.arange(int(seconds * rate)) / rate
    audio = (amplitude * np.sin(2 * np.pi * frequency * time)).astype(np.float32)
    return audio if channels == 1 else np.stack([audio] * channels, axis=1)


def write_audio(path, audio, rate, subtype="PCM_16", **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    soundfile.write(path, audio, rate, subtype=subtype, **kwargs)
    return path


@pytest.fixture
def tiny_params():
    """The tiny preset with short clips so a few seconds of audio give several clips."""
    return params_lib.preset("tiny", clip_samples=1024, synthetic_tones=24, batch_size=4)


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "cache")


def run(*args, env_extra=None):
    """A command of this project (`python ARGS` in the repository root) in a new process, as a
    user runs it: for what only a process shows (start-up, kernels chosen from the environment,
    signals, resource limits, devices made before TensorFlow starts)."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300)


@contextlib.contextmanager
def _captured_output():
    """File descriptors 1 and 2 (Python's, absl's and TensorFlow's C++ output alike) into two
    temporary files while the block runs; yields {"stdout": file, "stderr": file}."""
    from absl import logging as absl_logging
    absl_handler = absl_logging.get_absl_handler().python_handler
    saved = (sys.stdout, sys.stderr, absl_handler.stream, os.dup(1), os.dup(2))
    files = {"stdout": tempfile.TemporaryFile(), "stderr": tempfile.TemporaryFile()}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        for number, file in enumerate(files.values(), 1):
            os.dup2(file.fileno(), number)
        sys.stdout, sys.stderr = (io.TextIOWrapper(open(number, "wb", closefd=False),
                                                   write_through=True) for number in (1, 2))
        absl_handler.stream = sys.stderr
        yield files
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr, absl_handler.stream = saved[:3]
        for number, descriptor in enumerate(saved[3:], 1):
            os.dup2(descriptor, number)
            os.close(descriptor)


def command(script, *args):
    """`python SCRIPT ARGS` (a command of this project: "train.py", or "-m", "data.inspect") run in
    this process through the command's `main(argv)`, for tests whose subject is what it does,
    not the process: a few seconds less than `run` each, TensorFlow's start-up. Returns
    subprocess.CompletedProcess with its exit status and what it wrote to stdout and stderr.
    The dtype policy a --precision flag set is put back afterwards."""
    import keras
    if script == "-m":  # python -m MODULE ARGS
        script, *args = args
    module = importlib.import_module(script.removesuffix(".py"))
    directory = os.getcwd()
    os.chdir(ROOT)
    try:
        with _captured_output() as files:
            returncode = module.main([script, *args])
    finally:
        os.chdir(directory)
        keras.mixed_precision.set_dtype_policy("float32")
    output = {}
    for name, file in files.items():
        file.seek(0)
        output[name] = file.read().decode()
        file.close()
    return subprocess.CompletedProcess([script, *args], returncode, **output)


def copy_model(model_dir, tmp_path):
    """A copy of a model dir in tmp_path, to change."""
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    return copy


def _session_folder(tmp_path_factory, worker_id):
    """The test session's temporary folder, shared by the pytest-xdist workers (each worker's
    own folder is one below it)."""
    folder = tmp_path_factory.getbasetemp()
    return folder if worker_id == "master" else folder.parent


@pytest.fixture(scope="session")
def clips(tmp_path_factory, worker_id):
    """A --cache_dir every test shares that is not about the clip cache itself: each set of
    data params is preprocessed once in the session (two processes building the same cache at
    once is safe: the second keeps the first's)."""
    return _session_folder(tmp_path_factory, worker_id) / "clips"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, clips, request):
    """A folder of the test module's own; its `cache` is the session's shared clip cache."""
    folder = tmp_path_factory.mktemp(request.module.__name__.removeprefix("test_"))
    clips.mkdir(parents=True, exist_ok=True)
    (folder / "cache").symlink_to(clips)
    return folder


def _trained_once(tmp_path_factory, worker_id, name, args, make_data=None):
    """train.py ARGS run once in the test session into SESSION/NAME/model (its output in
    SESSION/NAME/train.log), read-only for every test; `make_data(folder)` first writes its
    audio into SESSION/NAME/data. Under pytest-xdist the first worker that
    needs it trains it in the session's temporary folder, and the others wait for it there (an
    flock)."""
    session = _session_folder(tmp_path_factory, worker_id)
    workspace, done = session / name, session / f"{name}.done"
    with open(session / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(workspace, ignore_errors=True)  # what a failed try left
            os.makedirs(workspace)
            if make_data:
                make_data(workspace / "data")
            result = command("train.py", *args, f"--model_dir={workspace / 'model'}")
            assert result.returncode == 0, result.stderr
            (workspace / "train.log").write_text(result.stdout)
            done.touch()
    return workspace / "model"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, worker_id, clips):
    """TINY trained for 30 steps, checkpoints at 15 and 30: one run for every test that needs a
    trained model dir (read-only: copy it to change it); its clips are in `clips`."""
    return _trained_once(tmp_path_factory, worker_id, "trained", [
        *TINY, "--max_steps=30", "--checkpoint_every=15", f"--cache_dir={clips}"])


@pytest.fixture(scope="session")
def cascade_dir(tmp_path_factory, worker_id, clips):
    """A tiny two-stage cascade on the built-in tones: a 2450 Hz sketch (TINY) and an upsampler
    to 7350 Hz (the tiny preset with three residual layers, so that its receptive field reaches
    past its condition's), 30 steps each; CASCADE/cascade.json lists sketch/ and upsampler/."""
    sketch = _trained_once(tmp_path_factory, worker_id, "cascade_sketch", [
        *TINY, "--decimation=9", "--max_steps=30", "--checkpoint_every=30",
        f"--cache_dir={clips}"])
    upsampler = _trained_once(tmp_path_factory, worker_id, "cascade_upsampler", [
        "--preset=tiny", "--synthetic_tones=32", "--residual_layers=3", "--upsample_from=2450",
        "--max_steps=30", "--checkpoint_every=30", f"--cache_dir={clips}"])
    folder = _session_folder(tmp_path_factory, worker_id) / "cascade"
    with open(_session_folder(tmp_path_factory, worker_id) / "cascade.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not folder.exists():
            os.makedirs(folder.parent / "cascade.tmp", exist_ok=True)
            for name, model in (("sketch", sketch), ("upsampler", upsampler)):
                shutil.copytree(model, folder.parent / "cascade.tmp" / name, dirs_exist_ok=True)
            (folder.parent / "cascade.tmp" / "cascade.json").write_text(
                '{"stages": ["sketch", "upsampler"]}\n')
            os.rename(folder.parent / "cascade.tmp", folder)
    return folder


# Pitch ranges (Hz) of the labelled tones: two octaves apart.
PITCH_RANGES = {"low": (100.0, 200.0), "high": (800.0, 1600.0)}


@pytest.fixture(scope="session")
def labelled_model_dir(tmp_path_factory, worker_id, clips):
    """The tiny preset trained with --labels=folders on tones in two labelled pitch ranges
    (DATA/low, DATA/high: 8 files of 3 s each, one random pitch per file), 600 steps on
    1024-sample clips: enough to keep its labels apart."""
    def make_data(folder):
        rng = np.random.default_rng(0)
        for label, (low, high) in PITCH_RANGES.items():
            for index in range(8):
                frequency = np.exp(rng.uniform(np.log(low), np.log(high)))
                write_audio(str(folder / label / f"{index}.wav"),
                            tone(3.0, 22050, frequency, amplitude=0.3), 22050)
    session = _session_folder(tmp_path_factory, worker_id)
    return _trained_once(tmp_path_factory, worker_id, "labelled", [
        "--preset=tiny", f"--data_dir={session / 'labelled' / 'data'}", "--labels=folders",
        "--clip_samples=1024", "--learning_rate=3e-3", "--max_steps=600",
        "--checkpoint_every=600", f"--cache_dir={clips}"], make_data)


# The modules that take longest (each a minute or more on two cores: they train, or start
# processes), longest first. pytest-xdist hands whole modules to its workers in collection
# order (pytest.ini: --dist=loadscope), so running these first lets the workers end together
# instead of one finishing a long module alone.
LONGEST_FIRST = ["test_reliability.py", "test_distribute.py", "test_train.py",
                 "test_diffusion.py", "test_bad_input.py", "test_network.py"]


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: (LONGEST_FIRST.index(item.path.name)
                                 if item.path.name in LONGEST_FIRST else len(LONGEST_FIRST)))


def pytest_xdist_auto_num_workers(config):
    """--numprocesses=auto: one worker more than cores (at most 4): while a worker waits for a
    command's process, or on the trained model another worker is making, a core would idle."""
    return min(4, len(os.sched_getaffinity(0)) + 1)
