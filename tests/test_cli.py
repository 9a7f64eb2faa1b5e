"""The command lines as a user runs them."""

import json
import os
import re
import subprocess

import pytest

from conftest import ROOT, command, copy_model, run, tone, write_audio


def test_inspect_prints_one_json_object_and_names_skipped_files(tmp_path):
    """A new process, as a user starts it: nothing TensorFlow prints joins the JSON on stdout
    (the other commands' tests run them in the test's process: conftest's `command`)."""
    folder = tmp_path / "music" / "genres_original" / "jazz"
    write_audio(str(folder / "jazz.00000.wav"), tone(3, 22050), 22050)
    (folder / "jazz.00054.wav").write_bytes(b"\x00" * 100)  # GTZAN's broken file, roughly
    result = run("-m", "data.inspect", f"--data_dir={tmp_path / 'music'}", "--preset=tiny",
                 f"--cache_dir={tmp_path / 'cache'}")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["files_found"] == 2 and report["files_used"] == 1
    assert report["sample_rate"] == 7350
    assert report["clips"] == 3 * 7350 // 2048
    assert report["seconds"] == pytest.approx(report["clips"] * 2048 / 7350, abs=1e-3)
    [skipped] = report["files_skipped"]
    assert skipped["path"].endswith("jazz.00054.wav") and skipped["reason"]
    warnings = [line for line in result.stderr.splitlines() if "jazz.00054.wav" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: skipping ")


ABSL_PREFIX = re.compile(r"^[DIWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ", re.MULTILINE)


def test_commands_print_plain_lines_and_absl_prefixes_only_when_asked(model_dir, tmp_path):
    """One kind of line on the terminal: information plain, warnings and errors prefixed;
    absl's own format with --log_format=absl."""
    write_audio(str(tmp_path / "music" / "a.wav"), tone(1, 22050), 22050)
    (tmp_path / "music" / "broken.wav").write_bytes(b"\x00" * 100)
    runs = {
        "train": ("train.py", "--preset=tiny", "--synthetic_tones=32", "--residual_layers=2",
                  "--max_steps=2", "--checkpoint_every=2", f"--model_dir={tmp_path / 'm'}",
                  f"--cache_dir={tmp_path / 'cache'}"),
        "inspect": ("-m", "data.inspect", f"--data_dir={tmp_path / 'music'}", "--preset=tiny",
                    f"--cache_dir={tmp_path / 'cache'}"),
        "generate": ("generate.py", f"--model_dir={model_dir}", "--seconds=0.1",
                     "--num_samples=2", f"--output_dir={tmp_path / 'out'}"),
        "evaluate": ("evaluate.py", f"--generated={tmp_path / 'out'}",
                     f"--reference={tmp_path / 'out'}"),
        "export": ("export.py", f"--model_dir={model_dir}", f"--output={tmp_path / 'saved'}"),
        "search_schedule": ("search_schedule.py", f"--model_dir={copy_model(model_dir, tmp_path)}",
                            "--steps=6", f"--reference={tmp_path / 'out'}", "--num_samples=1",
                            "--seconds=0.3", "--budget_minutes=0"),
    }
    for name, args in runs.items():
        result = command(*args)
        assert result.returncode == 0, result.stderr
        output = result.stdout + result.stderr
        assert not ABSL_PREFIX.search(output), (name, output)
        if name == "train":
            assert re.search(r"^saved \S+ckpt-2$", output, re.MULTILINE), output
        if name == "inspect":
            assert re.search(r"^warning: skipping \S+broken.wav", output, re.MULTILINE), output
    result = command(*runs["train"][:-2], f"--model_dir={tmp_path / 'm2'}",
                     f"--cache_dir={tmp_path / 'cache'}", "--log_format=absl")
    assert result.returncode == 0, result.stderr
    assert ABSL_PREFIX.search(result.stdout + result.stderr)


def test_inspect_without_data_dir_uses_built_in_tones(tmp_path):
    result = command("-m", "data.inspect", "--preset=tiny", "--synthetic_tones=16",
                     f"--cache_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["source"] == "built-in tones" and report["files_used"] == 16


@pytest.mark.parametrize("args, message", [
    (["--data_dir=/no/such/folder"], "--data_dir=/no/such/folder: not an existing folder"),
    (["--preset=huge"], "unknown preset 'huge'"),
    (["--clip_samples=0"], "clip_samples must be > 0"),
])
def test_inspect_errors_are_one_line_without_traceback(tmp_path, args, message):
    result = command("-m", "data.inspect", f"--cache_dir={tmp_path}", *args)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_ci_runs_exactly_the_readme_quick_start():
    """.ci/run takes the two commands of the README's quick start from the README itself (its
    awk line, run here on the README): the install-and-demo line and the test command."""
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        script = f.read()
    extract = re.search(r"^mapfile -t commands < <\((awk .+ README\.md)\)$", script,
                        re.M).group(1)
    ci_test_command = re.search(r"^TEST_COMMAND='(.+)'$", script, re.M).group(1)
    commands = subprocess.run(["bash", "-c", extract], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.splitlines()
    assert len(commands) == 2
    assert "pip install -r requirements.txt" in commands[0]
    assert "python train.py --preset=tiny" in commands[0]
    assert commands[1] == ci_test_command == "python -m pytest -q tests"