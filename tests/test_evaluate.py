"""evaluate.py: distances that rank real music, noise and tones the way a listener would."""

import json
import os

import numpy as np
import pytest
import soundfile

import evaluate
from conftest import TEST_MUSIC, command, run, tone, write_audio
from test_bad_input import assert_one_line_refusal

RATE = 22050


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two halves of the committed music (the first and last 2 s of each excerpt: other
    moments of the same tracks), white noise, sines, and the second half with white noise added
    at 20 dB SNR: 12 x 2 s each."""
    root = tmp_path_factory.mktemp("evaluate")
    rng = np.random.default_rng(0)
    paths = sorted(os.path.join(folder, name) for folder, _, names in os.walk(TEST_MUSIC)
                   for name in names if name.endswith(".flac"))
    assert len(paths) == 12
    for index, path in enumerate(paths):
        audio, rate = soundfile.read(path, dtype="float32")
        first, second = audio[:len(audio) // 2], audio[len(audio) // 2:]
        write_audio(str(root / "first" / f"{index}.wav"), first, rate)
        write_audio(str(root / "second" / f"{index}.wav"), second, rate)
        noise = rng.normal(size=second.shape)
        noise *= np.sqrt(np.mean(second ** 2) / np.mean(noise ** 2)) / 10  # 20 dB below
        write_audio(str(root / "noisy" / f"{index}.wav"),
                    np.clip(second + noise, -1, 1).astype(np.float32), rate)
        write_audio(str(root / "white" / f"{index}.wav"),
                    (0.1 * rng.normal(size=second.shape)).astype(np.float32), rate)
        write_audio(str(root / "sines" / f"{index}.wav"),
                    tone(2, RATE, frequency=100 + 40 * index, amplitude=0.3), RATE)
    return root


@pytest.fixture(scope="module")
def features(folders):
    # Analysed at 22050 Hz: three times the frames of 7350 Hz, enough for 24 s a side.
    return {name: evaluate.folder_features(str(folders / name), 22050)
            for name in ("first", "second", "noisy", "white", "sines")}


@pytest.fixture(scope="module")
def scores(features):
    return {name: evaluate.distances(features[name], features["first"])
            for name in ("first", "second", "noisy", "white", "sines")}


def test_a_folder_against_itself_is_about_zero(scores):
    real = scores["second"]
    itself = scores["first"]
    assert itself["frechet_mel"] < 1e-6 * real["frechet_mel"]
    assert itself["frechet_mfcc"] < 1e-6 * real["frechet_mfcc"]
    assert abs(itself["kid"]) < 0.05 * real["kid"]


@pytest.mark.parametrize("other", ["white", "sines"])
def test_noise_and_sines_are_far_further_than_other_real_music(scores, other):
    for name in ("frechet_mel", "frechet_mfcc", "kid"):
        assert scores[other][name] > 5 * scores["second"][name], name


def test_noise_at_20_db_snr_increases_every_distance(scores):
    for name in ("frechet_mel", "frechet_mfcc", "kid"):
        assert scores["noisy"][name] > 1.2 * scores["second"][name], name


def test_mel_filterbank_covers_the_spectrum_once():
    bank = evaluate.mel_filterbank(7350, 257)
    assert bank.shape == (257, 64) and (bank >= 0).all() and bank.max() <= 1
    peaks = bank.argmax(axis=0)
    assert (np.diff(peaks) >= 0).all() and peaks[-1] > 200  # ascending, up to Nyquist


def test_cli_prints_one_json_object_and_warns_about_unequal_sizes(folders, tmp_path):
    """Beside the distances, each folder's held notes: three steady 20 s sines are whistles
    (each spans its whole clip), at no frequency common to the clips."""
    for index in range(3):
        write_audio(str(tmp_path / "few" / f"{index}.wav"), tone(20, RATE, 300 + 50 * index), RATE)
    result = command("evaluate.py", f"--generated={tmp_path / 'few'}",
                     f"--reference={folders / 'first'}")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    generated = report["generated"]
    assert generated == {"folder": str(tmp_path / "few"), "clips": 3, "seconds": 60.0,
                         "frames": generated["frames"], "held_share": generated["held_share"],
                         "whistle_share": generated["whistle_share"], "steady_hz": []}
    assert generated["whistle_share"] > 0.9 and generated["held_share"] < 0.05
    assert report["reference"]["clips"] == 12 and report["reference"]["seconds"] == 24.0
    assert 0 < report["reference"]["held_share"] < 1
    assert report["frechet_mel"] > 0 and report["kid_std"] > 0
    assert "the sides differ in size" in result.stderr


def test_too_few_frames_is_one_warning_line_not_a_linalg_warning(folders, tmp_path):
    write_audio(str(tmp_path / "short" / "a.wav"), tone(1, RATE, 300), RATE)
    result = command("evaluate.py", f"--generated={tmp_path / 'short'}",
                     f"--reference={folders / 'first'}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["frechet_mel"] > 0
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: the generated side has")


def test_cli_skips_a_broken_file_and_refuses_an_empty_folder(folders, tmp_path):
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "broken.wav").write_bytes(b"RIFF....")
    write_audio(str(tmp_path / "mixed" / "fine.wav"), tone(5, RATE), RATE)
    result = command("evaluate.py", f"--generated={tmp_path / 'mixed'}",
                     f"--reference={folders / 'first'}")
    assert result.returncode == 0, result.stderr
    assert "skipped" in result.stderr and "broken.wav" in result.stderr
    assert json.loads(result.stdout)["generated"]["clips"] == 1
    (tmp_path / "empty").mkdir()
    assert_one_line_refusal(command("evaluate.py", f"--generated={tmp_path / 'empty'}",
                                    f"--reference={folders / 'first'}"), "no usable audio files")
    assert_one_line_refusal(run("evaluate.py", f"--generated={tmp_path / 'nowhere'}",
                                f"--reference={folders / 'first'}"), "not an existing folder")


def test_seam_ratios_single_out_a_click_and_a_change_of_sound():
    """A tone that goes on is an ordinary moment (about 1 or less); one whose phase flips at the
    seam clicks, and one that turns into noise changes sound (both several times the kept
    audio's own)."""
    rate, boundary = 7350, 3681  # near a crest of the tone
    sine = tone(1.0, rate, 300.0, amplitude=0.1)
    assert max(evaluate.seam_ratios(sine, boundary, sine[:boundary])) < 1.1
    flipped = np.concatenate([sine[:boundary], -sine[boundary:]])
    assert evaluate.seam_ratios(flipped, boundary, sine[:boundary])[0] > 4
    noisy = np.concatenate([sine[:boundary],
                            0.1 * np.random.default_rng(0).standard_normal(len(sine) - boundary)])
    assert evaluate.seam_ratios(noisy, boundary, sine[:boundary])[1] > 3
