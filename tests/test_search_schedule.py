"""search_schedule.py: a grid search that writes the best fast schedule generate.py then uses."""

import json

import pytest

from conftest import command, copy_model, tone, write_audio
from test_bad_input import assert_one_line_refusal
from test_generate import generate, read_all, written


@pytest.fixture
def searched(model_dir, tmp_path):
    """A copy of the tiny model after a 3-candidate search against a folder of tones."""
    copy = copy_model(model_dir, tmp_path)
    for index in range(3):
        write_audio(str(tmp_path / "reference" / f"{index}.wav"),
                    tone(2, 7350, 200 + 100 * index, amplitude=0.3), 7350)
    result = command("search_schedule.py", f"--model_dir={copy}", "--steps=4",
                     f"--reference={tmp_path / 'reference'}", "--num_samples=2",
                     "--seconds=0.5", "--max_candidates=3")
    return copy, result


def test_search_writes_the_best_schedule_and_generate_uses_it(searched, tmp_path):
    model, result = searched
    assert result.returncode == 0, result.stderr
    record = json.loads((model / "schedules" / "4.json").read_text())
    assert record == json.loads(result.stdout.splitlines()[-1])
    progress = [line for line in result.stderr.splitlines()
                if line.startswith("[") and "skipped" not in line]
    assert len(progress) == record["candidates_scored"] <= 3
    scores = [float(line.split("frechet_mel ")[1].split()[0]) for line in progress]
    assert record["score"] == pytest.approx(min(scores), rel=1e-3)
    assert len(record["betas"]) == 4 and record["betas"] == sorted(record["betas"])

    searched_clip = read_all(written(generate(model, tmp_path / "a", "--steps=4",
                                              "--samples=1500")))
    explicit = read_all(written(generate(
        model, tmp_path / "b", "--samples=1500",
        f"--fast_schedule={','.join(str(beta) for beta in record['betas'])}")))
    assert (searched_clip[0][0] == explicit[0][0]).all()


def test_a_spent_budget_stops_after_the_first_candidate(model_dir, tmp_path):
    copy = copy_model(model_dir, tmp_path)
    write_audio(str(tmp_path / "reference" / "a.wav"), tone(2, 7350, 300, amplitude=0.3), 7350)
    result = command("search_schedule.py", f"--model_dir={copy}", "--steps=6",
                     f"--reference={tmp_path / 'reference'}", "--num_samples=1",
                     "--seconds=0.3", "--budget_minutes=0")
    assert result.returncode == 0, result.stderr
    assert "time budget of 0 minutes spent" in result.stderr
    record = json.loads(result.stdout.splitlines()[-1])
    assert record["candidates_scored"] == 1 and record["betas"] == [1e-4, 1e-3, 1e-2, 0.05,
                                                                     0.2, 0.5]
    assert record["default_score"] == record["score"]


def test_search_refuses_a_missing_reference(model_dir, tmp_path):
    assert_one_line_refusal(command("search_schedule.py", f"--model_dir={model_dir}",
                                    f"--reference={tmp_path / 'nowhere'}"),
                            "not an existing folder")
