"""Small helpers every part of the project uses that are not about parameters: the error a
user can fix, an atomic JSON writer, the cache folder, temporary files left by killed
processes, one-line reports."""

import json
import os


class UserError(Exception):
    """A problem the user can fix (a flag, a file, a folder); shown as one line, no traceback."""


def write_json(path, values):
    """Writes `values` as indented JSON, atomically (temp name, then rename): a reader never
    sees half a file. UserError, leaving nothing behind, when it cannot be written."""
    temp_path = f"{path}.tmp-{os.getpid()}"
    try:
        with open(temp_path, "w") as f:
            json.dump(values, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(temp_path, path)
    except OSError as error:
        if os.path.exists(temp_path):
            os.remove(temp_path)
        raise UserError(f"cannot write {path} ({error.strerror or first_line(error)}); free "
                        "space or give a writable folder") from None


def default_cache_dir():
    """$XDG_CACHE_HOME/music-diffwave, else ~/.cache/music-diffwave: clips, kernel choices."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "music-diffwave")


def left_by_ended_process(path):
    """Whether `path`, a temporary file or folder named `...-PID` after the process writing it,
    was left by a process that has ended (killed): then nothing will finish or remove it."""
    pid = path.rsplit("-", 1)[1]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's, running
        return False
    return False


def first_line(error):
    """The first line of an exception's message, for one-line reports."""
    return (str(error).strip() or type(error).__name__).splitlines()[0]
