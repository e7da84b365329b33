"""Writing the files a user names: checked before any computation, written whole or not at all.

`output_target` checks a path once, before the work that will fill it, and says what it is:
`-` (standard output), a stream (an existing character device such as `/dev/null`, or a
named pipe: written directly, never replaced), or a regular file, new or existing. Symbolic
links are followed: the file they point to is written, the link stays. Folders, block
devices, sockets, missing folders and unwritable places are refused with one line that names
the path as the user gave it and the option it came from. `write_output` then writes a
regular file atomically: a temporary file in the same folder (so that the rename cannot cross
file systems), flushed and synced, given the target's mode (an existing file keeps its mode,
a new one gets 0666 less the umask), renamed over the target, the folder synced; on any
failure or interruption the temporary file is removed and the target is as it was. Errors
name the user's path, never the temporary file.
"""

import dataclasses
import os
import stat
import sys
import tempfile


@dataclasses.dataclass(frozen=True)
class Target:
    """A checked output: `given` as the user wrote it, for `option`; `kind` "stdout", "stream" or
    "file"; `path` the real path written (links followed; None for standard output)."""

    given: str
    option: str
    kind: str
    path: str | None


def plot_formats() -> tuple[str, ...]:
    """File extensions matplotlib can write (without the dot)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return tuple(sorted(FigureCanvasBase.get_supported_filetypes()))


def _what(mode: int) -> str | None:
    """A name for a file type that is neither a regular file nor a stream (None for those)."""
    if stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def output_target(text: str, option: str, *, formats: tuple[str, ...] | None = None, stdout: bool = True) -> Target:
    """Check `text`, the path given to `option`, before anything is computed; ValueError if unusable.

    `formats`: the valid file extensions (lower case, without the dot), or None for any;
    `stdout`: whether `-` (standard output) is accepted. Valid targets are listed in the
    module docstring.
    """
    if not text:
        raise ValueError(f"{option}: empty path; give a file name" + (" or - for standard output" if stdout else ""))
    if text == "-":
        if not stdout:
            raise ValueError(f"{option} -: cannot write to standard output; give a file name")
        return Target(text, option, "stdout", None)
    if formats is not None:
        extension = os.path.splitext(text)[1].lower().lstrip(".")
        if extension not in formats:
            found = f"extension {extension!r}" if extension else "no extension"
            raise ValueError(f"{option} {text!r}: {found}; valid extensions: {', '.join(formats)}")
    path = os.path.realpath(text)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:
        raise ValueError(f"{option} {text!r}: {error.strerror}") from None
    if mode is not None:
        what = _what(mode)
        if what is not None:
            raise ValueError(f"{option} {text!r} is {what}; give a file name, a character device, a named pipe"
                             + (" or -" if stdout else ""))
        if not stat.S_ISREG(mode):
            return Target(text, option, "stream", path)
        if not os.access(path, os.W_OK):
            raise ValueError(f"{option} {text!r}: the file exists and is not writable")
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise ValueError(f"{option} {text!r}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {text!r}: cannot create files in the folder {folder} (permission denied)")
    return Target(text, option, "file", path)


def write_output(target: Target, content: bytes) -> None:
    """Write `content` to a checked `target` (module docstring); OSError naming the user's path on failure."""
    try:
        if target.kind == "stdout":
            sys.stdout.flush()
            sys.stdout.buffer.write(content)
            sys.stdout.buffer.flush()
        else:
            assert target.path is not None  # streams and files always carry their real path
            if target.kind == "stream":
                with open(target.path, "wb") as handle:
                    handle.write(content)
            else:
                _replace(target.path, content)
    except OSError as error:
        raise OSError(f"cannot write {target.given}: {error.strerror or error}") from None


def write_file(path, content: bytes) -> None:
    """Write `content` to the file `path` (checked as an output of no option, then `write_output`)."""
    try:
        target = output_target(os.fspath(path), "output", stdout=False)
    except ValueError as error:
        raise OSError(f"cannot write {os.fspath(path)}: {error}") from None
    write_output(target, content)


def _replace(path: str, content: bytes) -> None:
    """Atomic replacement of the regular file `path` (new or existing) by `content`."""
    folder, name = os.path.split(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _sync_folder(folder)


def _sync_folder(folder: str) -> None:
    """Make the rename durable (where the platform lets a folder be opened and synced)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
