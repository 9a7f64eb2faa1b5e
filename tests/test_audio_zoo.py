"""A folder of bad and odd audio, end to end: every file is decoded correctly or skipped with
one warning naming it; nothing crashes and no batch holds NaN."""

import dataclasses
import json
import os

import numpy as np
import pytest
import soundfile

import data
from conftest import command, tone, write_audio
from data import cache

FREQUENCY = 300.0  # every decodable file holds this tone, so decoded values can be checked
# MP3 joins the zoo where libsndfile (>= 1.1) can write it; test_audio_files.py skips its MP3
# test with that reason elsewhere.
MP3 = "MP3" in soundfile.available_formats()


def build_zoo(folder):
    """Writes the zoo; returns ({decodable name: seconds}, {skipped name: reason pattern})."""
    decodable, skipped = {}, {}

    def good(name, seconds, rate=22050, channels=1, **kwargs):
        write_audio(str(folder / name), tone(seconds, rate, FREQUENCY, channels=channels), rate,
                    **kwargs)
        decodable[name] = seconds

    good("pcm16.wav", 1.0)
    good("pcm8.wav", 1.1, subtype="PCM_U8")
    good("pcm24.wav", 1.2, subtype="PCM_24")
    good("pcm32.wav", 1.3, subtype="PCM_32")
    good("float.wav", 1.4, subtype="FLOAT")
    good("stereo.wav", 1.5, channels=2)
    good("rate44100.wav", 1.6, rate=44100)
    good("rate48000.wav", 1.7, rate=48000)
    good("a.flac", 1.8)
    good("a.ogg", 1.9, subtype="VORBIS")
    if MP3:
        good("a.mp3", 2.0, subtype="MPEG_LAYER_III")

    wav = (folder / "pcm16.wav").read_bytes()
    (folder / "zero.wav").write_bytes(b"")
    skipped["zero.wav"] = "empty file"
    (folder / "header.wav").write_bytes(wav[:30])
    skipped["header.wav"] = "truncated WAV header|not readable"
    (folder / "cut.wav").write_bytes(wav[:len(wav) // 2])
    skipped["cut.wav"] = "truncated"
    (folder / "text.wav").write_text("this is a text file, not audio\n" * 20)
    skipped["text.wav"] = "not readable as audio"
    for name, bad in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        audio = tone(1, 22050, FREQUENCY)
        audio[500] = bad
        write_audio(str(folder / name), audio, 22050, subtype="FLOAT")
        skipped[name] = "NaN or infinite"
    write_audio(str(folder / "silence.wav"), np.zeros(22050, np.float32), 22050)
    skipped["silence.wav"] = "silent"
    write_audio(str(folder / "short.wav"), tone(0.05, 22050, FREQUENCY), 22050)
    skipped["short.wav"] = "shorter than one clip"
    (folder / "x.wav").mkdir()  # a folder with an audio name: not a file, not counted
    write_audio(str(folder / "locked.wav"), tone(1.0, 22050, FREQUENCY), 22050)
    os.chmod(folder / "locked.wav", 0)
    if os.access(folder / "locked.wav", os.R_OK):  # root reads anything: then it decodes
        decodable["locked.wav"] = 1.0
    else:
        skipped["locked.wav"] = "permission"
    return decodable, skipped


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo") / "music"
    folder.mkdir()
    decodable, skipped = build_zoo(folder)
    yield folder, decodable, skipped
    os.chmod(folder / "locked.wav", 0o644)


def test_each_file_is_decoded_or_skipped_with_one_warning(zoo, tiny_params, cache_dir, caplog):
    folder, decodable, skipped = zoo
    params = dataclasses.replace(tiny_params, val_fraction=0.0)
    clip_cache = data.prepare(params, str(folder), cache_dir)
    manifest = clip_cache.manifest
    assert manifest["files_found"] == len(decodable) + len(skipped)
    assert manifest["files_used"] == len(decodable)
    reasons = {os.path.basename(item["path"]): item["reason"]
               for item in manifest["files_skipped"]}
    assert set(reasons) == set(skipped)
    for name, pattern in skipped.items():
        assert any(part in reasons[name] for part in pattern.split("|")), (name, reasons[name])
        assert sum(name in record.getMessage() for record in caplog.records
                   if record.levelname == "WARNING") == 1, name
    # Durations: input_seconds counts all audio decoded, the silent (1 s) and short (0.05 s)
    # files' too, before they are dropped; MP3 adds up to ~0.1 s of encoder padding.
    assert manifest["input_seconds"] == pytest.approx(sum(decodable.values()) + 1.05, abs=0.15)

    clips = np.stack(list(cache.clip_dataset(clip_cache.folder, "train", params.clip_samples)
                          .as_numpy_iterator()))[..., 0]
    assert np.isfinite(clips).all()
    # Values: every clip is the 300 Hz tone at the target loudness.
    spectrum = np.abs(np.fft.rfft(clips * np.hanning(clips.shape[1]), axis=1))
    peaks = spectrum.argmax(axis=1) * params.sample_rate / clips.shape[1]
    assert np.abs(peaks - FREQUENCY).max() < 2 * params.sample_rate / clips.shape[1]
    assert np.sqrt((clips ** 2).mean(axis=1)) == pytest.approx(0.1, rel=0.1)

    batch = next(iter(data.train_dataset(clip_cache, params)))["audio"]
    assert batch.shape == (params.batch_size, params.clip_samples, 1)
    assert np.isfinite(batch.numpy()).all()


def test_inspect_lists_every_skip(zoo, tmp_path):
    folder, decodable, skipped = zoo
    result = command("-m", "data.inspect", f"--data_dir={folder}", "--preset=tiny",
                     "--clip_samples=1024", f"--cache_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    listed = {os.path.basename(item["path"]) for item in report["files_skipped"]}
    assert listed == set(skipped) and report["files_used"] == len(decodable)
    assert "Traceback" not in result.stderr
