import os
import struct
import subprocess

import numpy as np
import pytest
import soundfile

from conftest import tone, write_audio
from data import audio_files
from data.audio_files import BadAudio

RATE = 22050


def test_finds_audio_recursively_and_ignores_the_rest(tmp_path):
    for rel in ["blues/blues.00000.wav", "jazz/deep/a.AU", "b.flac", "c.ogg", "d.mp3",
                "notes.txt", ".hidden/e.wav"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (tmp_path / "folder.wav").mkdir()  # a directory with an audio name is not a file
    found = [os.path.relpath(p, tmp_path) for p in audio_files.find_audio_files(str(tmp_path))]
    assert found == sorted(["b.flac", "blues/blues.00000.wav", "c.ogg", "d.mp3",
                            "jazz/deep/a.AU"])


def test_plain_16_bit_wav_is_decoded_in_graph(tmp_path):
    path = write_audio(str(tmp_path / "a.wav"), tone(1, RATE), RATE)
    assert audio_files.probe(path, RATE) == audio_files.Source(
        path, audio_files.DECODE_WAV16_IN_GRAPH, RATE, RATE)


@pytest.mark.parametrize("name, subtype, file_format", [
    ("pcm24.wav", "PCM_24", "WAV"), ("pcm32.wav", "PCM_32", "WAV"),
    ("float.wav", "FLOAT", "WAV"), ("pcm8.wav", "PCM_U8", "WAV"),
    ("extensible.wav", "PCM_16", "WAVEX"), ("a.au", "PCM_16", "AU"),
    ("a.flac", "PCM_16", "FLAC"), ("a.ogg", "VORBIS", "OGG"),
])
def test_other_formats_go_to_soundfile_and_decode_correctly(tmp_path, name, subtype,
                                                            file_format):
    audio = tone(1.5, 44100, frequency=300.0, channels=2)
    path = write_audio(str(tmp_path / name), audio, 44100, subtype=subtype, format=file_format)
    source = audio_files.probe(path, RATE)
    assert source.decoder == audio_files.DECODE_SOUNDFILE and source.rate == 44100
    decoded = audio_files.decode_with_soundfile(path, RATE)
    expected = tone(1.5, RATE, frequency=300.0)  # mono mix, resampled to 22050 Hz
    assert decoded.dtype == np.float32 and decoded.shape == expected.shape
    tolerance = 0.05 if subtype in ("VORBIS", "PCM_U8") else 1e-3
    assert np.abs(decoded[100:-100] - expected[100:-100]).max() < tolerance


def test_mp3_when_libsndfile_supports_it(tmp_path):
    if "MP3" not in soundfile.available_formats():
        pytest.skip("this libsndfile cannot write MP3")
    path = write_audio(str(tmp_path / "a.mp3"), tone(2, RATE), RATE, subtype="MPEG_LAYER_III")
    decoded = audio_files.decode_with_soundfile(path, RATE)
    assert abs(len(decoded) - 2 * RATE) < 0.1 * RATE  # MP3 pads with encoder delay
    assert 0.3 < np.sqrt(np.mean(decoded ** 2)) < 0.4  # RMS of a 0.5 sine is 0.354


def _wav_bytes(tmp_path):
    return open(write_audio(str(tmp_path / "src.wav"), tone(1, RATE), RATE), "rb").read()


def test_truncated_data_chunk_is_refused(tmp_path):
    data = _wav_bytes(tmp_path)
    path = tmp_path / "cut.wav"
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(BadAudio, match="truncated"):
        audio_files.probe(str(path), RATE)


def test_odd_sized_chunk_before_data_goes_to_soundfile(tmp_path):
    # RIFF pads odd chunks to even sizes; tf.audio.decode_wav does not handle that.
    data = _wav_bytes(tmp_path)
    at = data.find(b"data")
    padded = bytearray(data[:at] + b"junk" + struct.pack("<I", 3) + b"abc\x00" + data[at:])
    struct.pack_into("<I", padded, 4, len(padded) - 8)
    path = tmp_path / "odd.wav"
    path.write_bytes(bytes(padded))
    assert audio_files.probe(str(path), RATE).decoder == audio_files.DECODE_SOUNDFILE
    assert len(audio_files.decode_with_soundfile(str(path), RATE)) == RATE


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"RIFF\x10\x00\x00\x00WAVEfmt ", "truncated WAV header|not readable"),
    (b"this is a text file, not audio\n" * 10, "not readable as audio"),
])
def test_broken_files_are_refused_with_a_reason(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(BadAudio, match=reason):
        audio_files.probe(str(path), RATE)


def test_unreadable_file_is_refused(tmp_path):
    path = write_audio(str(tmp_path / "locked.wav"), tone(1, RATE), RATE)
    os.chmod(path, 0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as a user who can read any file (root)")
        with pytest.raises(BadAudio, match="permission"):
            audio_files.probe(path, RATE)
    finally:
        os.chmod(path, 0o644)


def test_nan_samples_are_refused(tmp_path):
    audio = tone(1, RATE)
    audio[100] = np.nan
    audio[200] = np.inf
    path = write_audio(str(tmp_path / "nan.wav"), audio, RATE, subtype="FLOAT")
    with pytest.raises(BadAudio, match="NaN"):
        audio_files.decode_with_soundfile(path, RATE)


def test_resample_keeps_duration_and_pitch():
    audio = tone(2, 48000, frequency=1000.0)
    out = audio_files.resample(audio, 48000, RATE)
    assert len(out) == 2 * RATE
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * RATE / len(out) - 1000.0) < 1.0


def test_interrupted_wav_write_leaves_no_file(tmp_path, monkeypatch):
    def die_before_the_rename(source, target):
        assert os.path.getsize(source) > 44  # the temporary file was written
        raise KeyboardInterrupt
    monkeypatch.setattr(audio_files.os, "replace", die_before_the_rename)
    target = tmp_path / "out" / "clip.wav"
    with pytest.raises(KeyboardInterrupt):
        audio_files.write_wav(str(target), tone(0.1, RATE), RATE)
    assert os.listdir(tmp_path / "out") == []


def test_wav_is_written_as_16_bit(tmp_path):
    path = str(tmp_path / "clip.wav")
    audio_files.write_wav(path, tone(0.5, RATE), RATE)
    read, rate = soundfile.read(path, dtype="float32")
    assert rate == RATE and soundfile.info(path).subtype == "PCM_16"
    np.testing.assert_allclose(read, tone(0.5, RATE), atol=1 / 32767)


def test_a_wav_streamed_to_a_pipe_is_read_whole(tmp_path):
    """ffmpeg and sox writing to a pipe cannot go back to fill in the sizes: 0xFFFFFFFF."""
    path = write_audio(str(tmp_path / "piped.wav"), tone(2, RATE), RATE)
    data = bytearray(open(path, "rb").read())
    data[4:8] = struct.pack("<I", 0xFFFFFFFF)
    data[data.index(b"data") + 4:data.index(b"data") + 8] = struct.pack("<I", 0xFFFFFFFF)
    open(path, "wb").write(bytes(data))
    source = audio_files.probe(path, RATE)
    assert source.decoder == audio_files.DECODE_SOUNDFILE
    audio = audio_files.decode_with_soundfile(path, RATE)
    np.testing.assert_allclose(audio, tone(2, RATE), atol=1e-4)


def test_links_to_folders_are_followed_once_and_loops_end(tmp_path):
    library, music = tmp_path / "library", tmp_path / "music"
    write_audio(str(library / "album" / "a.wav"), tone(1, RATE), RATE)
    music.mkdir()
    (music / "album").symlink_to(library / "album")  # a music library of links
    (music / "again").symlink_to(library / "album")  # the same folder twice
    (music / "loop").symlink_to(music)  # and a loop
    found = [os.path.relpath(path, music) for path in audio_files.find_audio_files(str(music))]
    assert found == ["again/a.wav"]  # once, by the first name in sorted order


def test_partial_wavs_of_killed_runs_are_removed_and_those_being_written_kept(tmp_path):
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = tmp_path / f".fast_seed0_000.wav.partial-{finished.pid}"
    alive = tmp_path / f".fast_seed0_001.wav.partial-{os.getpid()}"
    for path in (dead, alive):
        path.write_bytes(b"RIFF")
    assert audio_files.remove_stale_partial_wavs(str(tmp_path)) == [str(dead)]
    assert sorted(os.listdir(tmp_path)) == [alive.name]
