import dataclasses
import os
import subprocess

import numpy as np
import pytest

import data
from conftest import TEST_MUSIC, tone, write_audio
from data import pipeline

RATE = 22050


def _clips(clip_cache, params, split="train"):
    from data import cache
    dataset = cache.clip_dataset(clip_cache.folder, split, params.clip_samples)
    return np.stack(list(dataset.as_numpy_iterator()))[..., 0]


def test_mixed_folder_uses_good_files_and_skips_bad_ones(tmp_path, tiny_params, cache_dir,
                                                          caplog):
    folder = tmp_path / "music"
    write_audio(str(folder / "rock/good.wav"), tone(2, RATE), RATE)
    write_audio(str(folder / "rock/hifi.wav"), tone(2, 44100, channels=2), 44100,
                subtype="PCM_24")
    (folder / "jazz").mkdir()
    (folder / "jazz/empty.wav").write_bytes(b"")
    (folder / "jazz/notes.wav").write_text("not audio at all\n" * 20)
    write_audio(str(folder / "jazz/silence.wav"), np.zeros(RATE * 2, np.float32), RATE)
    write_audio(str(folder / "jazz/short.flac"), tone(0.05, RATE), RATE)
    nan = tone(2, RATE)
    nan[10] = np.nan
    write_audio(str(folder / "jazz/nan.wav"), nan, RATE, subtype="FLOAT")

    clip_cache = data.prepare(dataclasses.replace(tiny_params, val_fraction=0.0),
                            str(folder), cache_dir)
    manifest = clip_cache.manifest
    assert manifest["files_found"] == 7 and manifest["files_used"] == 2
    reasons = {os.path.basename(item["path"]): item["reason"]
               for item in manifest["files_skipped"]}
    assert set(reasons) == {"empty.wav", "notes.wav", "silence.wav", "short.flac", "nan.wav"}
    assert "empty" in reasons["empty.wav"] and "not readable" in reasons["notes.wav"]
    assert "silent" in reasons["silence.wav"] and "shorter than one clip" in reasons["short.flac"]
    assert "NaN" in reasons["nan.wav"]
    for name in reasons:  # one warning line per skipped file, naming it
        assert sum(name in record.getMessage() for record in caplog.records) == 1
    # 2 s at 7350 Hz = 14700 samples = 14 clips of 1024 per file.
    assert manifest["clips"] == manifest["train_clips"] == 28
    clips = _clips(clip_cache, tiny_params)
    assert clips.shape == (28, 1024) and np.isfinite(clips).all()


def test_in_graph_and_soundfile_decoding_agree(tmp_path, tiny_params, cache_dir):
    audio = tone(1, RATE, frequency=220.0) + tone(1, RATE, frequency=1300.0, amplitude=0.2)
    audio = np.round(audio * 32767).astype(np.int16)  # same integers in both files
    results = []
    for name in ("a.wav", "a.flac"):  # both 16-bit: only the decoder differs
        write_audio(str(tmp_path / name[2:] / name), audio, RATE)
        clip_cache = data.prepare(tiny_params, str(tmp_path / name[2:]), cache_dir)
        results.append(_clips(clip_cache, tiny_params))
    np.testing.assert_allclose(results[0], results[1], atol=1e-6)


def test_normalisation_gives_each_file_the_target_rms(tmp_path, tiny_params, cache_dir):
    quiet_then_loud = np.concatenate([tone(1, RATE, amplitude=0.05),
                                      tone(1, RATE, amplitude=0.4)])
    write_audio(str(tmp_path / "a.wav"), quiet_then_loud, RATE)
    params = dataclasses.replace(tiny_params, val_fraction=0.0)
    clip_cache = data.prepare(params, str(tmp_path), cache_dir)
    clips = _clips(clip_cache, params)
    assert np.sqrt(np.mean(clips ** 2)) == pytest.approx(params.target_rms, rel=1e-3)
    assert clip_cache.manifest["train_variance"] == pytest.approx(params.target_rms ** 2, rel=1e-2)
    # One gain for the whole file: the quiet half stays 8x quieter than the loud half.
    rms = np.sqrt(np.mean(clips ** 2, axis=1))
    assert rms[-1] / rms[0] == pytest.approx(8.0, rel=0.02)


def test_gain_is_capped_so_nothing_clips(tmp_path, tiny_params, cache_dir):
    clicks = np.zeros(2 * RATE, np.float32)
    clicks[::500] = 0.9  # very high crest factor: target RMS would push peaks past 1
    write_audio(str(tmp_path / "clicks.wav"), clicks, RATE, subtype="FLOAT")
    params = dataclasses.replace(tiny_params, val_fraction=0.0)
    clips = _clips(data.prepare(params, str(tmp_path), cache_dir), params)
    assert np.abs(clips).max() == pytest.approx(1.0, rel=1e-5)


def test_near_silent_clips_are_dropped(tmp_path, tiny_params, cache_dir):
    audio = np.concatenate([tone(1, RATE), np.full(RATE, 1e-4, np.float32)])  # -80 dBFS tail
    write_audio(str(tmp_path / "a.wav"), audio, RATE, subtype="FLOAT")
    params = dataclasses.replace(tiny_params, val_fraction=0.0)
    manifest = data.prepare(params, str(tmp_path), cache_dir).manifest
    # 7350 samples of tone: 7 whole clips plus one that straddles the end of the tone.
    assert manifest["clips"] == 8


def test_split_is_by_file_deterministic_and_disjoint(tmp_path, tiny_params, cache_dir):
    frequencies = np.linspace(200, 2000, 16)
    for i, frequency in enumerate(frequencies):
        write_audio(str(tmp_path / f"d/{i:02d}.wav"), tone(0.5, RATE, frequency), RATE)
    params = dataclasses.replace(tiny_params, val_fraction=0.3)
    first = data.prepare(params, str(tmp_path / "d"), cache_dir)
    again = data.prepare(params, str(tmp_path / "d"), str(tmp_path / "other_cache"))
    assert first.manifest == again.manifest
    assert first.manifest["val_files"] > 0 and first.manifest["train_files"] > 0
    assert first.manifest["val_files"] + first.manifest["train_files"] == 16

    def dominant(clips):
        bins = np.argmax(np.abs(np.fft.rfft(clips, axis=1)), axis=1)
        return set(np.round(bins * params.sample_rate / params.clip_samples / 50))

    assert not dominant(_clips(first, params, "train")) & dominant(_clips(first, params, "val"))


def test_cache_is_reused_and_keyed_by_params_and_files(tmp_path, tiny_params, cache_dir,
                                                       monkeypatch):
    """Keyed by the files' bytes: the same file written again (a new modification time, as a
    re-run of data/soundtracks.py gives) reuses the cache; other bytes or params do not."""
    path = write_audio(str(tmp_path / "d/a.wav"), tone(1, RATE), RATE)
    first = data.prepare(tiny_params, str(tmp_path / "d"), cache_dir)

    def no_rebuild(*args):
        raise AssertionError("the cache was rebuilt")
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "_build", no_rebuild)
        assert data.prepare(tiny_params, str(tmp_path / "d"), cache_dir) == first
        write_audio(path, tone(1, RATE), RATE)
        os.utime(path, ns=(2, 2))
        assert data.prepare(tiny_params, str(tmp_path / "d"), cache_dir) == first

    changed = dataclasses.replace(tiny_params, silence_dbfs=-40.0)
    assert data.prepare(changed, str(tmp_path / "d"), cache_dir).folder != first.folder
    write_audio(path, tone(1.5, RATE), RATE)
    os.utime(path, ns=(1, 1))
    assert data.prepare(tiny_params, str(tmp_path / "d"), cache_dir).folder != first.folder
    assert not [name for name in os.listdir(cache_dir) if "partial" in name]


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no audio files"),
    (lambda d: (d / "bad.wav").write_bytes(b""), "no usable audio"),
    (lambda d: write_audio(str(d / "s.wav"), np.zeros(RATE, np.float32), RATE),
     "no usable audio"),
])
def test_folder_without_usable_audio_is_a_clear_error(tmp_path, tiny_params, cache_dir, setup,
                                                      message):
    folder = tmp_path / "d"
    folder.mkdir()
    setup(folder)
    with pytest.raises(data.DataError, match=message):
        data.prepare(tiny_params, str(folder), cache_dir)
    assert not os.path.exists(cache_dir) or not os.listdir(cache_dir)


def test_missing_folder_is_a_clear_error(tmp_path, tiny_params, cache_dir):
    with pytest.raises(data.DataError, match="not an existing folder"):
        data.prepare(tiny_params, str(tmp_path / "nope"), cache_dir)


def test_built_in_tones_feed_batches(tiny_params, cache_dir):
    clip_cache = data.prepare(tiny_params, None, cache_dir)
    manifest = clip_cache.manifest
    assert manifest["files_used"] == tiny_params.synthetic_tones
    assert manifest["train_variance"] == pytest.approx(tiny_params.target_rms ** 2, rel=0.01)
    batches = data.train_dataset(clip_cache, tiny_params, seed=1).take(8)
    for batch in batches:
        batch = batch["audio"]
        assert batch.shape == (tiny_params.batch_size, tiny_params.clip_samples, 1)
        assert np.isfinite(batch.numpy()).all()
    val = [b["audio"].numpy() for b in data.val_dataset(clip_cache, tiny_params)]
    assert sum(len(b) for b in val) == manifest["val_clips"] > 0


def test_the_held_notes_set_is_built_in_beside_the_tones(tiny_params, cache_dir):
    """--synthetic_set=held_notes: a cache of its own, clips at the target RMS that hold their
    notes, the tones' cache key unchanged by the field's existence."""
    import held_notes
    params = dataclasses.replace(tiny_params, synthetic_set="held_notes", clip_samples=8000,
                                 decimation=9, synthetic_tones=8)
    notes = data.prepare(params, None, cache_dir)
    tones = data.prepare(dataclasses.replace(params, synthetic_set="tones"), None, cache_dir)
    assert notes.manifest["params"]["synthetic_set"] == "held_notes"
    assert "synthetic_set" not in tones.manifest["params"]
    shares = {}
    for name, cache in (("notes", notes), ("tones", tones)):
        clips = np.concatenate([b["audio"].numpy()[..., 0] for b in
                                data.train_dataset(cache, params, seed=0).take(2)])
        assert np.sqrt(np.mean(clips ** 2)) == pytest.approx(params.target_rms, rel=0.2)
        shares[name] = held_notes.folder_measure(list(clips), params.sample_rate)["held_share"]
    assert shares["notes"] > 0.8


def test_training_batches_are_shuffled_by_seed(tiny_params, cache_dir):
    clip_cache = data.prepare(tiny_params, None, cache_dir)

    def first_batches(seed):
        return np.concatenate([b["audio"].numpy() for b in
                               data.train_dataset(clip_cache, tiny_params, seed=seed).take(3)])

    np.testing.assert_array_equal(first_batches(3), first_batches(3))
    assert not np.array_equal(first_batches(3), first_batches(4))


def test_real_music_in_flac(cache_dir):
    import params as params_lib
    params = params_lib.preset("base")
    manifest = data.prepare(params, TEST_MUSIC, cache_dir).manifest
    assert manifest["files_used"] == manifest["files_found"] == 12
    assert manifest["sample_rate"] == 7350 and manifest["val_files"] >= 1
    # 4 s files give one clip of 16000 samples each, less the odd near-silent one.
    assert 10 <= manifest["clips"] <= 12
    assert manifest["train_variance"] == pytest.approx(params.target_rms ** 2, rel=0.1)


def test_one_file_drawn_for_validation_still_trains(tmp_path, tiny_params, cache_dir, caplog):
    """With one usable file and val_fraction 0.1, one name in ten hashed into validation left
    nothing to train on ("no usable audio (0 files, 0 skipped)")."""
    name = next(f"song{i}.wav" for i in range(1000)
                if pipeline._is_validation(f"song{i}.wav", tiny_params.val_fraction))
    folder = tmp_path / "one"
    write_audio(str(folder / name), tone(3, RATE), RATE)
    manifest = data.prepare(tiny_params, str(folder), cache_dir).manifest
    assert manifest["files_used"] == manifest["train_files"] == 1
    assert manifest["train_clips"] == manifest["val_clips"] == manifest["clips"] > 0
    assert manifest["validation"].startswith("the training clips")
    assert "all drawn for validation" in caplog.text


def test_a_file_name_that_is_not_utf8_is_read(tmp_path, tiny_params, cache_dir):
    folder = tmp_path / "old"
    folder.mkdir()
    odd = os.path.join(os.fsencode(folder), b"caf\xe9.wav")  # Latin-1, as an old tool wrote it
    write_audio(odd, tone(2, RATE), RATE)
    write_audio(str(folder / "plain.flac"), tone(2, RATE, frequency=300), RATE)
    manifest = data.prepare(tiny_params, str(folder), cache_dir).manifest
    assert manifest["files_found"] == manifest["files_used"] == 2, manifest["files_skipped"]


def test_a_too_long_clip_counts_files_once(tmp_path, tiny_params, cache_dir):
    folder = tmp_path / "two"
    for name in ("a.wav", "b.wav"):
        write_audio(str(folder / name), tone(1, RATE), RATE)
    params = dataclasses.replace(tiny_params, clip_samples=10_000_000)
    with pytest.raises(data.DataError, match=r"\(2 files found, 2 skipped"):
        data.prepare(params, str(folder), cache_dir)


def test_manifest_of_a_real_folder_has_no_built_in_tone_params(tmp_path, tiny_params, cache_dir):
    write_audio(str(tmp_path / "m" / "a.wav"), tone(2, RATE), RATE)
    manifest = data.prepare(tiny_params, str(tmp_path / "m"), cache_dir).manifest
    assert "clip_samples" in manifest["params"]
    assert not [name for name in manifest["params"] if name.startswith("synthetic_")]
    tones = data.prepare(tiny_params, None, cache_dir).manifest
    assert "synthetic_tones" in tones["params"]


def test_a_long_file_read_in_pieces_gives_the_clips_of_the_whole_file(
        tmp_path, tiny_params, cache_dir, monkeypatch):
    """Long files are decoded piece by piece (bounded memory); the resampler (48 kHz here, whose
    frames line up with the model's samples only every 49 samples) and the low-pass see their
    neighbours' margins, so the clips are those of the file decoded whole."""
    rate, seconds = 48000, 100
    time = np.arange(rate * seconds) / rate
    rng = np.random.default_rng(0)
    audio = 0.3 * np.sin(2 * np.pi * (200 + 20 * time) * time) + 0.05 * rng.normal(size=time.size)
    write_audio(str(tmp_path / "long" / "mix.wav"), np.stack([audio, -audio * 0.5], 1), rate)
    params = dataclasses.replace(tiny_params, val_fraction=0.0)
    assert len(pipeline._pieces([data.audio_files.probe(str(tmp_path / "long" / "mix.wav"),
                                                        params.input_rate)], params)) == 2
    pieces = data.prepare(params, str(tmp_path / "long"), cache_dir)
    monkeypatch.setattr(pipeline, "PIECE_SECONDS", 1000.0)
    whole = data.prepare(params, str(tmp_path / "long"), str(tmp_path / "other_cache"))
    assert pieces.manifest["train_clips"] == whole.manifest["train_clips"] == (
        seconds * params.sample_rate // params.clip_samples)
    np.testing.assert_allclose(_clips(pieces, params), _clips(whole, params), atol=2e-5)
    assert sorted(os.listdir(pieces.folder)) == [  # no piece left on disk
        "manifest.json", "train.tfrecord", "train_labels.npy", "val.tfrecord", "val_labels.npy"]


def test_validation_is_a_fixed_subset_spread_over_the_split(tiny_params, cache_dir):
    tiny_params = dataclasses.replace(tiny_params, val_fraction=0.6)
    clip_cache = data.prepare(tiny_params, None, cache_dir)
    every = _clips(clip_cache, tiny_params, "val")
    assert len(every) > 10
    def val_clips():
        return np.concatenate([batch["audio"].numpy()[..., 0] for batch in
                               data.val_dataset(clip_cache, tiny_params, max_clips=5)])

    subset = val_clips()
    step = -(-len(every) // 5)
    assert len(subset) <= 5
    np.testing.assert_array_equal(subset, every[::step])  # spread, from the last files too
    again = val_clips()
    np.testing.assert_array_equal(subset, again)


def test_stale_caches_and_builds_of_killed_runs_are_removed_and_live_ones_kept(
        tmp_path, tiny_params, cache_dir):
    path = write_audio(str(tmp_path / "d/a.wav"), tone(1, RATE), RATE)
    first = data.prepare(tiny_params, str(tmp_path / "d"), cache_dir)
    other = dataclasses.replace(tiny_params, silence_dbfs=-40.0)
    other_before = data.prepare(other, str(tmp_path / "d"), cache_dir)
    finished = subprocess.Popen(["true"])
    finished.wait()  # its process id names a build that was killed
    dead = os.path.join(cache_dir, f"0123abcd.partial-{finished.pid}")
    os.makedirs(dead)
    alive = os.path.join(cache_dir, f"4567cdef.partial-{os.getpid()}")
    os.makedirs(alive)
    write_audio(path, tone(1.5, RATE), RATE)  # the file changed: both caches are stale
    other_after = data.prepare(other, str(tmp_path / "d"), cache_dir)
    assert not os.path.exists(first.folder) and not os.path.exists(other_before.folder)
    assert not os.path.exists(dead) and os.path.exists(alive)  # a build still running stays
    second = data.prepare(tiny_params, str(tmp_path / "d"), cache_dir)
    assert os.path.exists(second.folder) and os.path.exists(other_after.folder)
