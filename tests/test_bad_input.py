"""Mistyped flags, odd paths and broken model dirs: one line on stderr saying what is wrong
and what to do, a non-zero exit, and nothing written."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import params as params_lib
from conftest import ROOT, command, copy_model, run, tone, write_audio
from network import DiffWave


def assert_one_line_refusal(result, expected):
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], \
        result.stderr


@pytest.mark.parametrize("flags, expected", [
    (["--preset=huge"], "unknown preset 'huge'"),
    (["--batch_size=0"], "batch_size must be > 0"),
    (["--residual_channels=-4"], "residual_channels must be > 0"),
    (["--max_steps=-1"], "--max_steps must be > 0"),
    (["--max_steps=ten"], "flag --max_steps=ten"),
    (["--noise_steps=0"], "noise_steps must be > 0"),
    (["--data_dir=/nonexistent/music"], "not an existing folder"),
    (["--learning_rate=fast"], "flag --learning_rate=fast"),
    (["--no_such_flag=1"], "Unknown command line flag 'no_such_flag'"),
    (["stray_argument"], "unexpected arguments"),
    (["--precision=float8"], "flag --precision=float8"),
    (["--strategy=ring"], "flag --strategy=ring"),
    (["--intra_op_threads=-1"], "--intra_op_threads must be >= 0"),
])
def test_train_refuses_bad_flags_and_creates_no_model_dir(tmp_path, flags, expected):
    target = tmp_path / "model"
    result = command("train.py", "--preset=tiny", f"--model_dir={target}",
                 f"--cache_dir={tmp_path / 'cache'}", *flags)
    assert_one_line_refusal(result, expected)
    assert not target.exists()


def test_train_refuses_a_model_dir_that_is_a_file_in_one_line_from_a_fresh_process(tmp_path):
    """A new process, as a user starts it: nothing TensorFlow prints at start-up joins the line
    (the other refusals run in the test's process: `command`)."""
    (tmp_path / "model").write_text("")
    assert_one_line_refusal(run("train.py", "--preset=tiny", f"--model_dir={tmp_path / 'model'}"),
                            "is a file")


@pytest.mark.parametrize("flags, expected", [
    (["--sampler=magic"], "flag --sampler=magic"),
    (["--seconds=ten"], "flag --seconds=ten"),
    (["--seconds=-2"], "--seconds must be > 0"),
    (["--num_samples=0"], "--num_samples must be > 0"),
    (["--batch_size=-1"], "--batch_size must be > 0"),
    (["--output_rate=-8000"], "--output_rate must be > 0"),
    (["--fast_schedule=0.1,lots"], "--fast_schedule=0.1,lots: give numbers"),
    (["--sampler=ddim", "--steps=0"], "--steps=0: ddim needs 1 to 50"),
    (["--checkpoint=ckpt-999"], "--checkpoint=ckpt-999 not found"),
    (["--inter_op_threads=-3"], "--inter_op_threads must be >= 0"),
    (["--corrector_steps=-1"], "--corrector_steps must be >= 0"),
    (["--corrector_snr=0"], "--corrector_snr must be > 0"),
    (["--strength=0.3"], "--strength applies to --init_audio"),
    (["--init_audio=/nonexistent/a.wav"], "/nonexistent/a.wav: not readable as audio"),
    (["--init_audio=/nonexistent/a.wav", "--strength=1.5"], "--strength=1.5: give a number"),
    (["--init_audio=/nonexistent/a.wav", "--seconds=2"], "--init_audio sets the length"),
    (["--init_audio=/nonexistent/a.wav", "--prompt_audio=/nonexistent/b.wav"],
     "give --init_audio (variations) or --prompt_audio"),
    (["--inpaint=1:2"], "--inpaint and --resamplings apply to --prompt_audio"),
    (["--prompt_audio=/nonexistent/b.wav", "--resamplings=-1"], "--resamplings must be >= 0"),
    (["--prompt_audio=/nonexistent/b.wav"], "/nonexistent/b.wav: not readable as audio"),
])
def test_generate_refuses_bad_flags_and_writes_nothing(model_dir, tmp_path, flags,
                                                       expected):
    output_dir = tmp_path / "out"
    assert_one_line_refusal(generate_command(model_dir, output_dir, *flags), expected)
    assert not output_dir.exists()


def generate_command(model_dir, output_dir, *flags):
    return command("generate.py", f"--model_dir={model_dir}", f"--output_dir={output_dir}", *flags)


def test_generate_refuses_a_prompt_longer_than_the_clip_and_an_inpaint_range_outside_it(
        model_dir, tmp_path):
    prompt = write_audio(str(tmp_path / "prompt.wav"), tone(2.0, 22050), 22050)
    for flags, expected in [
            (["--seconds=1.5"], f"--prompt_audio={prompt} is 2 s, not shorter than the 1.5 s"),
            (["--inpaint=1.5:2.5"], f"--inpaint=1.5:2.5 lies outside {prompt}, which is 2 s"),
            (["--inpaint=1:0.5"], "give 0 <= START < END <= 2"),
            (["--inpaint=1-2"], "--inpaint=1-2: give START:END in seconds"),
            (["--inpaint=0:1", "--seconds=3"], "--inpaint keeps the file's length")]:
        output_dir = tmp_path / "out"
        assert_one_line_refusal(generate_command(model_dir, output_dir, f"--prompt_audio={prompt}",
                                                 *flags), expected)
        assert not output_dir.exists()


def break_architecture(model_dir, tmp_path):
    broken = tmp_path / "broken"
    os.makedirs(broken)
    os.symlink(model_dir / "checkpoints", broken / "checkpoints")
    with open(model_dir / "params.json") as f:
        values = json.load(f)
    values["residual_channels"] = 8
    with open(broken / "params.json", "w") as f:
        json.dump(values, f)
    return broken


def params_only(model_dir, tmp_path):
    os.makedirs(tmp_path / "untrained")
    with open(model_dir / "params.json") as f, open(tmp_path / "untrained/params.json", "w") as g:
        g.write(f.read())
    return tmp_path / "untrained"


MODEL_DIR_CASES = {  # case: (flags given the trained model dir and a temp folder, message)
    "missing model dir": (lambda model, tmp: [f"--model_dir={tmp / 'nothing'}"],
                          "is not a folder"),
    "empty model dir": (lambda model, tmp: [f"--model_dir={tmp}"], "has no params.json"),
    "no checkpoint": (lambda model, tmp: [f"--model_dir={params_only(model, tmp)}"],
                      "has no checkpoint yet"),
    "other architecture": (lambda model, tmp: [f"--model_dir={break_architecture(model, tmp)}"],
                           "does not match params.json"),
    "zero seconds": (lambda model, tmp: ["--seconds=0"], "--seconds must be > 0"),
    "too many ddim steps": (lambda model, tmp: ["--sampler=ddim", "--steps=51"],
                            "--steps=51: ddim needs 1 to 50"),
    "fast beta outside training": (lambda model, tmp: ["--fast_schedule=1e-4,0.99,0.99"],
                                   "fast schedule beta 0.99"),
    "output under a file": (lambda model, tmp: [], "cannot be written"),
    "fast steps never searched": (lambda model, tmp: ["--steps=4"],
                                  "no searched 4-step schedule"),
    "steps with ddpm": (lambda model, tmp: ["--sampler=ddpm", "--steps=4"],
                        "--steps applies to ddim and fast"),
}


@pytest.mark.parametrize("case", MODEL_DIR_CASES)
def test_generate_refuses_broken_model_dirs_and_misfit_flags(model_dir, tmp_path,
                                                             case):
    make_flags, expected = MODEL_DIR_CASES[case]
    output_dir = tmp_path / "out"
    if case == "output under a file":
        (tmp_path / "a_file").write_text("")
        output_dir = tmp_path / "a_file" / "out"
    length = [] if case == "zero seconds" else ["--seconds=1"]
    result = command("generate.py", f"--model_dir={model_dir}", *make_flags(model_dir, tmp_path),
                 *length, f"--output_dir={output_dir}")
    assert_one_line_refusal(result, expected)
    assert not os.path.exists(output_dir)


@pytest.mark.parametrize("change, expected", [
    (lambda values: values.update(surprise=1), "unknown key"),
    (lambda values: values.pop("residual_layers"), "missing"),
    (lambda values: values.update(residual_layers="six"), "residual_layers"),
])
def test_broken_params_json_is_refused_by_both_commands(model_dir, tmp_path,
                                                        change, expected):
    copy = copy_model(model_dir, tmp_path)
    values = json.loads((copy / "params.json").read_text())
    change(values)
    (copy / "params.json").write_text(json.dumps(values))
    assert_one_line_refusal(command("generate.py", f"--model_dir={copy}",
                                f"--output_dir={tmp_path / 'out'}"), expected)
    assert_one_line_refusal(command("train.py", f"--model_dir={copy}", "--max_steps=40",
                                f"--cache_dir={tmp_path / 'cache'}"), expected)
    assert not (tmp_path / "out").exists()


def test_truncated_checkpoint_is_refused_by_both_commands(model_dir, tmp_path):
    copy = copy_model(model_dir, tmp_path)
    [data_file] = (copy / "checkpoints").glob("ckpt-30.data-*")
    data_file.write_bytes(data_file.read_bytes()[:1000])
    assert_one_line_refusal(command("generate.py", f"--model_dir={copy}",
                                f"--output_dir={tmp_path / 'out'}"), "ckpt-30")
    result = command("train.py", f"--model_dir={copy}", "--max_steps=40",
                 f"--cache_dir={tmp_path / 'cache'}")
    assert_one_line_refusal(result, "ckpt-30")
    assert "--checkpoint" not in result.stderr.replace("generate.py can also pick one with "
                                                       "--checkpoint", "")  # not train's flag
    assert not (tmp_path / "out").exists()


def test_checkpoint_with_nan_weights_generates_nothing(model_dir, tmp_path):
    copy = copy_model(model_dir, tmp_path)
    prefix = str(copy / "checkpoints" / "ckpt-30")
    # Rewrite the checkpoint with one EMA weight poisoned, through the same object graph.
    params = params_lib.Params.load(str(copy / "params.json"))
    ema, model = DiffWave(params).build_for(), DiffWave(params).build_for()
    tf.train.Checkpoint(ema=ema, model=model).restore(prefix).expect_partial()
    poisoned = ema.residual_layers[0].filter_conv.kernel
    poisoned.assign(np.full(poisoned.shape, np.nan, np.float32))
    shutil.rmtree(copy / "checkpoints")
    tf.train.CheckpointManager(tf.train.Checkpoint(ema=ema, model=model),
                               str(copy / "checkpoints"), 1).save(checkpoint_number=30)
    result = command("generate.py", f"--model_dir={copy}", f"--output_dir={tmp_path / 'out'}")
    assert_one_line_refusal(result, "NaN or infinite weights")
    assert not (tmp_path / "out").exists()


def test_generate_refuses_what_cannot_fit_in_memory_at_once(model_dir, tmp_path):
    result = command("generate.py", f"--model_dir={model_dir}", f"--output_dir={tmp_path / 'out'}",
                 "--seconds=1e9")
    assert_one_line_refusal(result, "GB of memory, more than the")
    assert not (tmp_path / "out").exists()


def test_generate_refuses_an_output_name_taken_by_a_folder_before_any_work(
        model_dir, tmp_path):
    (tmp_path / "out" / "ddpm_seed0_001.wav").mkdir(parents=True)
    result = command("generate.py", f"--model_dir={model_dir}", f"--output_dir={tmp_path / 'out'}",
                 "--num_samples=2", "--sampler=ddpm")  # ddpm: minutes of work, were it done
    assert_one_line_refusal(result, "ddpm_seed0_001.wav is a folder")
    assert sorted(os.listdir(tmp_path / "out")) == ["ddpm_seed0_001.wav"]


def test_generate_on_a_full_disk_says_so_in_one_line_and_leaves_no_partial_file(
        model_dir, tmp_path):
    from test_reliability import limited_file_size
    result = subprocess.run(
        [sys.executable, "generate.py", f"--model_dir={model_dir}", "--seconds=20",
         f"--output_dir={tmp_path / 'out'}"], cwd=ROOT, capture_output=True, text=True,
        timeout=300, preexec_fn=limited_file_size(100_000))  # the WAV needs 294 kB
    # After the progress bar, one line.
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot write")
    assert "File too large" in result.stderr
    assert os.listdir(tmp_path / "out") == []


def test_an_index_naming_a_deleted_checkpoint_generates_from_the_newest(
        model_dir, tmp_path):
    copy = copy_model(model_dir, tmp_path)
    (copy / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-99"\n')
    result = command("generate.py", f"--model_dir={copy}", f"--output_dir={tmp_path / 'out'}",
                 "--seconds=1")
    assert result.returncode == 0, result.stderr
    assert "from " + str(copy / "checkpoints" / "ckpt-30") in result.stderr


def test_train_without_params_json_says_that_is_what_is_missing(model_dir, tmp_path):
    copy = copy_model(model_dir, tmp_path)
    (copy / "params.json").unlink()
    result = command("train.py", f"--model_dir={copy}", "--max_steps=40", "--preset=base",
                 f"--cache_dir={tmp_path / 'cache'}")
    assert_one_line_refusal(result, "but no params.json")


def test_unwritable_cache_and_model_dirs_are_one_line_each(tmp_path):
    """As root nothing is read-only, so the folders are made impossible another way: the cache
    below a file, the model dir's lock file a folder."""
    (tmp_path / "file").write_text("")
    result = command("train.py", "--preset=tiny", f"--model_dir={tmp_path / 'a'}",
                 f"--cache_dir={tmp_path / 'file' / 'cache'}")
    assert_one_line_refusal(result, "cannot write the clip cache")
    (tmp_path / "model" / ".train.lock").mkdir(parents=True)
    result = command("train.py", "--preset=tiny", f"--model_dir={tmp_path / 'model'}",
                 f"--cache_dir={tmp_path / 'cache'}")
    assert_one_line_refusal(result, "cannot be written")
