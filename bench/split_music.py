"""Splits the clips of ../shared/get_more_music.sh into training and held-out music by whole
track (clips of one track are alike, so a split by clip would leak).

  python bench/split_music.py --music=MUSIC [--heldout_share=0.15]

Reads MUSIC/tracks.tsv and links every clip into MUSIC/split/train/<soundtrack>/ or
MUSIC/split/heldout/<soundtrack>/. Within each soundtrack the tracks are ordered by a hash of
their name and the first ones, up to --heldout_share of its clips (at least one track), are held
out: the same split on every machine, every soundtrack on both sides. Prints one JSON line with
the counts and the held-out tracks.
"""

import argparse
import collections
import csv
import hashlib
import json
import os
import shutil


def split(rows, heldout_share):
    """rows: [{"clip", "soundtrack", "track"}] -> {clip: "train" | "heldout"}."""
    tracks = collections.defaultdict(lambda: collections.defaultdict(list))
    for row in rows:
        tracks[row["soundtrack"]][row["track"]].append(row["clip"])
    sides = {}
    for soundtrack, clips_of in sorted(tracks.items()):
        total = sum(len(clips) for clips in clips_of.values())
        held = 0
        for track in sorted(clips_of, key=lambda name: hashlib.sha256(name.encode()).hexdigest()):
            side = "heldout" if held == 0 or held + len(clips_of[track]) <= heldout_share * total \
                else "train"
            held += len(clips_of[track]) if side == "heldout" else 0
            for clip in clips_of[track]:
                sides[clip] = side
    return sides


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--music", required=True, help="get_more_music.sh's OUT_DIR")
    parser.add_argument("--heldout_share", type=float, default=0.15)
    args = parser.parse_args()
    with open(os.path.join(args.music, "tracks.tsv")) as file:
        rows = list(csv.DictReader(file, delimiter="\t"))
    sides = split(rows, args.heldout_share)
    root = os.path.join(args.music, "split")
    shutil.rmtree(root, ignore_errors=True)
    for clip, side in sides.items():
        link = os.path.join(root, side, clip)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.abspath(os.path.join(args.music, clip)), link)
    counts = collections.Counter(sides.values())
    heldout = sorted({(row["soundtrack"], row["track"]) for row in rows
                      if sides[row["clip"]] == "heldout"})
    print(json.dumps({"train_clips": counts["train"], "heldout_clips": counts["heldout"],
                      "heldout_tracks": [f"{s}/{t}" for s, t in heldout], "root": root}))


if __name__ == "__main__":
    main()
