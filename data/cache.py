"""The on-disk clip cache: one folder per (data folder, file listing, preprocessing params).

Layout of `<cache_dir>/<key>/`:
  train.tfrecord, val.tfrecord - one record per clip, raw little-endian float32 [clip_samples];
  train_labels.npy, val_labels.npy - each clip's label, int32 [clips]: an index into the
                                 manifest's label_names (its file's first folder);
  manifest.json                - what was found, used and skipped, and clip statistics.

A cache is built in a temporary folder and renamed into place, so a killed run never leaves a
half-written cache behind under a valid key.
"""

import glob
import hashlib
import json
import os
import shutil

import numpy as np
import tensorflow as tf

from util import UserError, first_line, left_by_ended_process, write_json

# Bump when the preprocessing code changes in a way the params do not capture.
CACHE_VERSION = 3
SPLITS = ("train", "val")


DIGESTS_FILE = "file_digests.json"


def file_digests(files, cache_dir):
    """{path: SHA-256 of its bytes} for absolute paths `files`. A file whose size and
    modification time match the memo in cache_dir/DIGESTS_FILE keeps its digest there; the
    others are read and hashed (about a second a gigabyte, next to minutes of decoding), and
    the memo is updated when cache_dir is writable."""
    memo_path = os.path.join(cache_dir, DIGESTS_FILE)
    try:
        with open(memo_path) as file:
            memo = json.load(file)
    except (OSError, ValueError):
        memo = {}
    digests, changed = {}, False
    for path in files:
        stat = os.stat(path)
        known = memo.get(path)
        if known and known[:2] == [stat.st_size, stat.st_mtime_ns]:
            digests[path] = known[2]
            continue
        with open(path, "rb") as file:
            digests[path] = hashlib.file_digest(file, "sha256").hexdigest()
        memo[path] = [stat.st_size, stat.st_mtime_ns, digests[path]]
        changed = True
    if changed and os.path.isdir(cache_dir):
        try:
            write_json(memo_path, memo)
        except UserError:  # read-only: hashed again next time, nothing lost
            pass
    return digests


def cache_key(source, digests, data_params):
    """A hex digest of everything that determines the clips.

    Args:
      source: the absolute data folder, or a name for built-in data.
      digests: {absolute path under it: digest of its bytes} (`file_digests`), so an edited,
        added or removed file gives a new key, and the same bytes written again the same one.
      data_params: dict of every preprocessing parameter.
    """
    listing = sorted([os.path.relpath(path, source), digest] for path, digest in digests.items())
    text = json.dumps({"version": CACHE_VERSION, "source": source, "files": listing,
                       "params": data_params}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def remove_stale(cache_dir, source, digests):
    """Deletes what can never be used again in cache_dir: the temporary folders of builds whose
    process has ended, and caches of `source` whose key its files' digests (as cache_key takes
    them) no longer give: files changed since, or another CACHE_VERSION. Returns the folders
    removed."""
    removed = []
    for path in glob.glob(os.path.join(glob.escape(cache_dir), "*")):
        name = os.path.basename(path)
        if ".partial-" in name:
            stale = left_by_ended_process(name)
        else:
            manifest = read_manifest(path)
            stale = (manifest is not None and manifest.get("source") == source
                     and name != cache_key(source, digests, manifest.get("params")))
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def read_manifest(folder):
    """The manifest of a complete cache folder, or None if there is none."""
    try:
        with open(os.path.join(folder, "manifest.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class CacheWriter:
    """Writes clips into a temporary folder; `commit` renames it to its final name."""

    def __init__(self, folder):
        self.folder = folder
        self.temp_folder = f"{folder}.partial-{os.getpid()}"
        self.spilled = 0
        self.labels = {split: [] for split in SPLITS}
        shutil.rmtree(self.temp_folder, ignore_errors=True)
        os.makedirs(self.temp_folder)
        self.writers = {split: tf.io.TFRecordWriter(os.path.join(self.temp_folder,
                                                                 f"{split}.tfrecord"))
                        for split in SPLITS}

    def write(self, split, clips, label=0):
        """clips: float32 [num_clips, clip_samples], all of one label. OSError when the disk
        refuses them."""
        try:
            for clip in np.asarray(clips, "<f4"):
                self.writers[split].write(clip.tobytes())
                self.labels[split].append(label)
        except tf.errors.OpError as error:  # e.g. "...; No space left on device"
            raise OSError(first_line(error)) from None

    def spill(self, array):
        """Keeps `array` in a scratch .npy file of the temporary folder; returns its path."""
        self.spilled += 1
        path = os.path.join(self.temp_folder, f"spill-{self.spilled}.npy")
        np.save(path, array)
        return path

    def train_on_validation(self):
        """Makes the validation clips written so far the training clips too."""
        try:
            self._close()
            shutil.copyfile(os.path.join(self.temp_folder, "val.tfrecord"),
                            os.path.join(self.temp_folder, "train.tfrecord"))
            self.labels["train"] = list(self.labels["val"])
        except OSError:
            self.abort()
            raise

    def _close(self):
        writers, self.writers = self.writers, {}
        try:
            for writer in writers.values():
                writer.close()
        except tf.errors.OpError as error:
            raise OSError(first_line(error)) from None

    def commit(self, manifest):
        try:
            self._close()
            for split, labels in self.labels.items():
                np.save(os.path.join(self.temp_folder, f"{split}_labels.npy"),
                        np.array(labels, np.int32))
            with open(os.path.join(self.temp_folder, "manifest.json"), "w") as f:
                json.dump(manifest, f, indent=2)
        except OSError:
            self.abort()
            raise
        try:
            os.rename(self.temp_folder, self.folder)
        except OSError:  # another process finished the same cache first; theirs is as good
            shutil.rmtree(self.temp_folder, ignore_errors=True)

    def abort(self):
        try:
            self._close()
        except OSError:
            pass  # the folder goes anyway
        shutil.rmtree(self.temp_folder, ignore_errors=True)


def clip_labels(folder, split):
    """Each cached clip's label index, int32 [clips], in file order."""
    return np.load(os.path.join(folder, f"{split}_labels.npy"))


def clip_dataset(folder, split, clip_samples):
    """The cached clips of one split, in file order.

    Returns:
      tf.data.Dataset of float32 [clip_samples, 1].
    """
    records = tf.data.TFRecordDataset(os.path.join(folder, f"{split}.tfrecord"))
    return records.map(
        lambda record: tf.reshape(tf.io.decode_raw(record, tf.float32), [clip_samples, 1]),
        num_parallel_calls=tf.data.AUTOTUNE)
