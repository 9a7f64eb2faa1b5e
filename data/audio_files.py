"""Finding audio files, checking them before use, and decoding what TensorFlow cannot.

Every file is probed first (headers only). A plain 16-bit PCM WAV whose data chunk is complete
is decoded in the graph by `tf.audio.decode_wav`; other formats (8/24/32-bit and float WAV, AU,
FLAC, OGG, MP3) are decoded by soundfile. A file that cannot be used raises `BadAudio` with the
reason, and the pipeline skips it.
"""

import dataclasses
import glob
import io
import math
import os
import struct

import numpy as np
import scipy.signal
import soundfile

from util import UserError, first_line, left_by_ended_process

AUDIO_EXTENSIONS = (".wav", ".au", ".flac", ".ogg", ".mp3")

# How a source is decoded; the values index the branches of the pipeline's decoder.
DECODE_WAV16_IN_GRAPH = 0
DECODE_SOUNDFILE = 1
DECODE_SYNTHETIC = 2

_WAVE_FORMAT_PCM = 1
# The data size a program writing WAV to a pipe (ffmpeg, sox) leaves: unknown, read to the end.
_STREAMED_SIZE = 0xFFFFFFFF


class BadAudio(Exception):
    """A file that is skipped; the message is the reason shown to the user."""


@dataclasses.dataclass(frozen=True)
class Source:
    """One audio file (or built-in tone) that passed the probe."""
    path: str      # absolute path, or "synthetic/tone_NNNNN"
    decoder: int   # one of the DECODE_* constants
    rate: int      # Hz as stored
    frames: int = 0  # frames in the file (0 for the built-in tones)


def find_audio_files(data_dir):
    """Sorted absolute paths of every file under `data_dir` with an audio extension.

    Directories are never returned, even one named like `x.wav`; hidden folders are skipped.
    Links to folders are followed, each real folder once, so a link loop ends.
    """
    found, seen = [], set()
    for folder, subfolders, files in os.walk(os.path.abspath(data_dir), followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        found.extend(os.path.join(folder, name) for name in files
                     if name.lower().endswith(AUDIO_EXTENSIONS)
                     and os.path.isfile(os.path.join(folder, name)))
    return sorted(found)


def _riff_layout(path):
    """Reads a WAV file's chunk headers.

    Returns:
      (format_tag, bits_per_sample, declared_data_bytes, available_data_bytes,
      plain): `plain` is False when an odd-sized chunk precedes the data, which RIFF pads
      but `tf.audio.decode_wav` does not understand. None when the file is not RIFF/WAVE.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return None
        format_tag = bits = None
        plain = True
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                raise BadAudio("truncated WAV header: no data chunk")
            chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"fmt ":
                fmt = f.read(min(chunk_size, 16))
                if len(fmt) < 16:
                    raise BadAudio("truncated WAV header: short fmt chunk")
                format_tag, bits = struct.unpack("<H", fmt[:2])[0], struct.unpack("<H", fmt[14:16])[0]
                f.seek(chunk_size - 16 + (chunk_size & 1), os.SEEK_CUR)
            elif chunk_id == b"data":
                if format_tag is None:
                    raise BadAudio("corrupt WAV header: data chunk before fmt chunk")
                return format_tag, bits, chunk_size, size - f.tell(), plain
            else:
                f.seek(chunk_size + (chunk_size & 1), os.SEEK_CUR)
            plain = plain and chunk_size % 2 == 0


def probe(path, input_rate):
    """Checks that a file is usable audio and picks its decoder. Reads headers only.

    Returns:
      Source.
    Raises:
      BadAudio: with the reason it cannot be used.
    """
    try:
        if os.path.getsize(path) == 0:
            raise BadAudio("empty file (0 bytes)")
        with open(path, "rb"):
            pass
        layout = _riff_layout(path) if path.lower().endswith(".wav") else None
        info = soundfile.info(os.fsencode(path))  # bytes: a name need not be valid UTF-8
    except PermissionError:
        raise BadAudio("no permission to read it") from None
    except (OSError, RuntimeError, soundfile.LibsndfileError) as error:
        raise BadAudio(f"not readable as audio ({first_line(error)})") from None
    if info.frames <= 0:
        raise BadAudio("no audio frames")
    if info.channels <= 0 or info.samplerate <= 0:
        raise BadAudio(f"invalid header ({info.channels} channels at {info.samplerate} Hz)")
    in_graph = False
    if layout is not None:
        format_tag, bits, declared, available, plain = layout
        if declared == _STREAMED_SIZE:  # libsndfile reads what the file holds
            return Source(path, DECODE_SOUNDFILE, info.samplerate, info.frames)
        if declared > available:
            raise BadAudio(f"truncated: the header declares {declared} bytes of audio but the "
                           f"file holds {available}")
        in_graph = format_tag == _WAVE_FORMAT_PCM and bits == 16 and plain
    return Source(path, DECODE_WAV16_IN_GRAPH if in_graph else DECODE_SOUNDFILE,
                  info.samplerate, info.frames)


def resample(audio, from_rate, to_rate):
    """Polyphase resampling of float32 [time] between integer rates (scipy's default filter)."""
    if from_rate == to_rate:
        return audio
    divisor = math.gcd(int(from_rate), int(to_rate))
    return scipy.signal.resample_poly(audio, to_rate // divisor, from_rate // divisor).astype(
        np.float32)


def decode_with_soundfile(path, input_rate, start=0, frames=-1):
    """Decodes any soundfile-readable file, or `frames` of it from frame `start` (-1: to the
    end), to mono float32 at `input_rate`.

    Returns:
      float32 [time], values as stored (full scale = 1).
    Raises:
      BadAudio: unreadable, or samples that are NaN/inf.
    """
    try:
        audio, rate = soundfile.read(os.fsencode(path), frames=frames, start=start,
                                     dtype="float32", always_2d=True)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as error:
        raise BadAudio(f"cannot decode ({first_line(error)})") from None
    if not np.isfinite(audio).all():
        raise BadAudio("contains NaN or infinite samples")
    # A matrix-vector product mixes to mono ~7x faster than mean(axis=1) on [time, 2].
    mono = audio @ np.full(audio.shape[1], 1.0 / audio.shape[1], np.float32)
    return resample(mono, rate, input_rate)


def write_wav(path, audio, rate):
    """float [time] in [-1, 1] -> 16-bit WAV at path, written under a temporary name and renamed,
    so an interrupted write never leaves a truncated file at path. UserError when it cannot be
    written (disk full, read-only, a folder of that name)."""
    temporary = os.path.join(os.path.dirname(path),
                             f".{os.path.basename(path)}.partial-{os.getpid()}")
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        encoded = io.BytesIO()  # encoded first, so a failed write names its cause (errno)
        soundfile.write(encoded, audio, rate, subtype="PCM_16", format="WAV")
        with open(temporary, "wb") as f:
            f.write(encoded.getbuffer())
        os.replace(temporary, path)
    except OSError as error:
        reason = error.strerror or first_line(error)
        raise UserError(f"cannot write {path} ({reason}); free space or choose another "
                        "--output_dir") from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def remove_stale_partial_wavs(folder):
    """Deletes the temporary files of write_wav calls whose process has ended (a killed
    generate.py); returns their paths."""
    removed = []
    for path in glob.glob(os.path.join(glob.escape(folder), ".*.wav.partial-*")):
        if left_by_ended_process(path):
            os.remove(path)
            removed.append(path)
    return removed
