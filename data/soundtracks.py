"""The music the shipped models trained on: six free game soundtracks packaged by Debian, cut
into 30 s clips and split into training and held-out music by whole track.

  python -m data.soundtracks MUSIC [--heldout_share=0.15] [--no_install]

1. Installs the packages (warzone2100-music, nexuiz-music, ufoai-music, planetblupi-music-ogg,
   drascula-music, hyperrogue-music; about 700 MB) and ffmpeg with apt-get, unless they are
   already installed or --no_install is given.
2. Decodes every track to mono 22050 Hz and cuts it into 30 s clips (the last one shorter),
   MUSIC/<soundtrack>/<soundtrack>.NNNNN.wav, 16-bit PCM, and writes MUSIC/tracks.tsv (clip,
   soundtrack, track): clips of one track are alike, so evaluation holds out whole tracks.
3. Links every clip into MUSIC/split/train/ or MUSIC/split/heldout/ (`split`): within each
   soundtrack the tracks are ordered by a hash of their name and the first ones, up to
   --heldout_share of its clips and at least one track, are held out, so every machine gets the
   same split and every soundtrack is on both sides.

Licences (Debian's copyright files): Warzone 2100 and Nexuiz GPL-2+, Planet Blupi GPL-3+,
UFO:AI CC-BY-SA-3.0 / GPL-2+, Drascula BSD-like, HyperRogue CC-BY-3.0 / GPL-2+ (per track). A
track ffmpeg cannot decode is skipped with a line saying so. Prints one JSON line of counts.
"""

import argparse
import collections
import csv
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

PACKAGES = {  # soundtrack: (Debian package, where it puts the music)
    "warzone2100": ("warzone2100-music", "/usr/share/games/warzone2100/music"),
    "nexuiz": ("nexuiz-music", "/usr/share/games/nexuiz/data/music.pk3"),
    "ufoai": ("ufoai-music", "/usr/share/games/ufoai/base/0music.pk3"),
    "planetblupi": ("planetblupi-music-ogg", "/usr/share/planetblupi/music"),
    "drascula": ("drascula-music", "/usr/share/scummvm/drascula/audio"),
    "hyperrogue": ("hyperrogue-music", "/usr/share/hyperrogue/music"),
}
AUDIO = (".ogg", ".opus", ".mp3", ".wav", ".flac")
CLIP_SECONDS = 30
RATE = 22050


def fail(message):
    sys.exit(f"error: {message}")


def install():
    """apt-get installs what is missing; one line saying what to do where it cannot."""
    missing = [package for package, path in PACKAGES.values() if not os.path.exists(path)]
    if shutil.which("ffmpeg") is None:
        missing.append("ffmpeg")
    if not missing:
        return
    if shutil.which("apt-get") is None:
        fail(f"needs {' '.join(missing)}: this script installs them with apt-get (Debian, "
             "Ubuntu); elsewhere install ffmpeg and copy the packages' music to the paths in "
             "data/soundtracks.py's PACKAGES, then run it with --no_install")
    if os.geteuid() != 0:
        fail(f"needs {' '.join(missing)}: run `sudo apt-get install {' '.join(missing)}` "
             "(or this script as root), then again with --no_install")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
        result = subprocess.run(command, env=environment, capture_output=True, text=True)
        if result.returncode:
            last = (result.stderr.strip().splitlines() or ["no message"])[-1]
            fail(f"`{' '.join(command)}` failed ({last}); install {' '.join(missing)} by hand "
                 "and run with --no_install")


def tracks_of(path, unpacked):
    """The sorted audio files of one soundtrack; a .pk3 (a zip) is unpacked into `unpacked`."""
    if path.endswith(".pk3"):
        with zipfile.ZipFile(path) as archive:
            archive.extractall(unpacked)
        path = unpacked
    return sorted(file for file in glob.glob(os.path.join(path, "**", "*"), recursive=True)
                  if file.lower().endswith(AUDIO))


def cut(track, folder, name, first):
    """Decodes `track` into 30 s clips folder/name.NNNNN.wav numbered from `first`. Returns the
    clip file names (none if ffmpeg cannot decode it)."""
    with tempfile.TemporaryDirectory() as scratch:
        result = subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", track, "-ac", "1", "-ar",
             str(RATE), "-c:a", "pcm_s16le", "-f", "segment", "-segment_time",
             str(CLIP_SECONDS), os.path.join(scratch, "%05d.wav")], capture_output=True)
        if result.returncode:
            print(f"skipped {track}: ffmpeg cannot decode it", file=sys.stderr)
            return []
        names = []
        for number, segment in enumerate(sorted(os.listdir(scratch)), first):
            names.append(f"{name}.{number:05d}.wav")
            shutil.move(os.path.join(scratch, segment), os.path.join(folder, names[-1]))
        return names


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


def link_split(music, heldout_share):
    """MUSIC/split/{train,heldout}/<clip> links by `split` of MUSIC/tracks.tsv. Returns the
    summary printed."""
    with open(os.path.join(music, "tracks.tsv")) as file:
        rows = list(csv.DictReader(file, delimiter="\t"))
    sides = split(rows, heldout_share)
    root = os.path.join(music, "split")
    shutil.rmtree(root, ignore_errors=True)
    for clip, side in sides.items():
        link = os.path.join(root, side, clip)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.abspath(os.path.join(music, clip)), link)
    counts = collections.Counter(sides.values())
    heldout = sorted({f"{row['soundtrack']}/{row['track']}" for row in rows
                      if sides[row["clip"]] == "heldout"})
    return {"train_clips": counts["train"], "heldout_clips": counts["heldout"],
            "heldout_tracks": heldout, "split": root}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("music", help="folder to write the clips, tracks.tsv and split/ into")
    parser.add_argument("--heldout_share", type=float, default=0.15)
    parser.add_argument("--no_install", action="store_true",
                        help="use what is installed; do not call apt-get")
    parser.add_argument("--split_only", action="store_true",
                        help="only (re)make MUSIC/split/ from MUSIC/tracks.tsv")
    args = parser.parse_args()
    if not 0 < args.heldout_share < 1:
        parser.error("--heldout_share must be between 0 and 1")
    if not args.split_only:
        if not args.no_install:
            install()
        if shutil.which("ffmpeg") is None:
            fail("ffmpeg not found: install it (it decodes the soundtracks' Ogg Vorbis/Opus)")
        rows = []
        with tempfile.TemporaryDirectory() as unpacked:
            for name, (package, path) in sorted(PACKAGES.items()):
                if not os.path.exists(path):
                    fail(f"{path} not found: install the Debian package {package} (or leave "
                         "out --no_install)")
                folder = os.path.join(args.music, name)
                os.makedirs(folder, exist_ok=True)
                count = 0
                for track in tracks_of(path, os.path.join(unpacked, name)):
                    for clip in cut(track, folder, name, count):
                        rows.append({"clip": f"{name}/{clip}", "soundtrack": name,
                                     "track": os.path.splitext(os.path.basename(track))[0]})
                        count += 1
                print(f"{name}: {count} clips", file=sys.stderr)
        with open(os.path.join(args.music, "tracks.tsv"), "w", newline="") as file:
            writer = csv.DictWriter(file, ["clip", "soundtrack", "track"], delimiter="\t")
            writer.writeheader()
            writer.writerows(rows)
    elif not os.path.exists(os.path.join(args.music, "tracks.tsv")):
        fail(f"{args.music}/tracks.tsv not found: run without --split_only first")
    print(json.dumps(link_split(args.music, args.heldout_share)))


if __name__ == "__main__":
    main()
