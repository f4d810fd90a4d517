"""Files in and out, safely: every file the workbench reads or writes goes through here.

The rules live here so that every caller gets them:

- an output never lands on one of the command's inputs (``check_outputs``, before any work);
- a file is written by temp file + rename (``write_atomically``), so a reader sees the old file
  or the new one, never half;
- a path read as a file must be a regular file (``require_regular_file``, ``open_regular_file``):
  opening a named pipe waits for a writer forever, and a device never ends;
- a small JSON file is read with a size cap and every parser failure, deep nesting included,
  becomes one error (``read_json``);
- a new folder gets a unique name atomically (``create_unique_folder``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from .errors import OutputError, OutputRefused, WorkbenchError

MAX_JSON_BYTES = 16 * 2**20  # config.json, adapter_config.json, run configs: a few KB in practice
# write_atomically's temp files: mkstemp(prefix=".NAME.", suffix=".tmp") adds 8 of [a-z0-9_].
_OUR_TEMP_FILE = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
STALE_TEMP_AGE_S = 10 * 60  # a live write touches its temp file far more often than this
MAX_NAME_ATTEMPTS = 10_000

PathLike = str | os.PathLike


def check_outputs(outputs: Mapping[str, PathLike], inputs: Mapping[str, PathLike | None]) -> None:
    """Refuse, before any work, outputs that cannot be written or would destroy an input.

    ``outputs`` and ``inputs`` map what the user calls each path ("--out", "the dataset") to the
    path. An output is refused when it is an existing folder or something other than a regular
    file (a FIFO, a device), when its folder is missing or not writable, or when it is the same
    file as an input: the same path once resolved (``./x`` and ``x``, a symbolic link, a folder
    reached two ways) or the same inode (a hard link). Folder inputs are given as the files read
    from them (``hub.checkpoint_files``), so ``--out model/model.safetensors`` is caught too.
    """
    for out_name, out in outputs.items():
        out = Path(out)
        _check_output_place(out_name, out)
        for in_name, source in inputs.items():
            if source is not None and same_file(out, Path(source)):
                raise OutputRefused(
                    f"{out_name} {out} is the same file as {in_name} {source}: writing it would destroy "
                    "what is being read. Choose another output file."
                )


def same_file(a: Path, b: Path) -> bool:
    """Whether writing ``a`` would replace ``b``: the same path once resolved, or the same inode."""
    try:
        if a.resolve() == b.resolve():
            return True
    except (OSError, RuntimeError):  # a symbolic-link loop: compare inodes below
        pass
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): different files
        return False


def _check_output_place(name: str, out: Path) -> None:
    try:
        info = os.stat(out)
    except FileNotFoundError:
        info = None  # a new file, or a dangling link that the write replaces
    except OSError as exc:
        raise OutputRefused(f"Cannot write {name} {out}: {exc.strerror or exc}") from exc
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise OutputRefused(
            f"{name} {out} is a folder; give a file name inside it, such as {out / 'adapter.safetensors'}"
        )
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise OutputRefused(f"{name} {out} is {describe_kind(info.st_mode)}, not a file the workbench can replace")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise OutputRefused(f"Cannot write {name} {out}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputRefused(f"Cannot write {name} {out}: folder {folder}: {os.strerror(errno.EACCES)}")


def describe_kind(mode: int) -> str:
    """What a non-regular file is, in words, for messages."""
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((words for test, words in kinds if test(mode)), "not a regular file")


# Files the workbench never opens: PyTorch checkpoints and pickles run code when they are loaded.
PICKLE_SUFFIXES = frozenset({".bin", ".ckpt", ".pickle", ".pkl", ".pt", ".pth"})


def is_pickle_name(path: Path) -> bool:
    """Whether the file's name says pickle (its bytes may say so too: see ``adapters``)."""
    return path.suffix.lower() in PICKLE_SUFFIXES


def write_atomically(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that a reader sees the old file or the new one, never half.

    A temp file in the same folder, fsync, then rename over the target: a failed write (full disk,
    no permission, a kill) leaves any existing file byte-identical.
    """
    with open_atomically(path) as f:
        f.write(payload)


class AtomicFile:
    """The temp file behind ``open_atomically``; a failed write is an OutputError."""

    def __init__(self, path: Path, file):
        self.path, self._file = path, file

    def write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise _save_error(self.path, exc) from exc


@contextmanager
def open_atomically(path: Path) -> Iterator[AtomicFile]:
    """A file written as it goes, for outputs too large to build in memory first (a million
    classified rows): the rows go to a temp file in the same folder, which replaces ``path`` only
    when the block ends without an error. An error, a Stop, Ctrl+C or a kill leaves ``path`` as it
    was (and a stopped or failed write removes its temp file)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"Cannot save to {path}: folder {folder} does not exist")
    if path.is_dir():
        raise OutputError(
            f"Cannot save to {path}: it is a folder; give a file name such as {path / 'adapter.safetensors'}"
        )
    remove_stale_temp_files(folder)
    tmp_name = None
    try:
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
            f = os.fdopen(fd, "wb")
        except OSError as exc:
            raise _save_error(path, exc) from exc
        with f:
            yield AtomicFile(path, f)
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:
                raise _save_error(path, exc) from exc
        try:
            os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
            os.replace(tmp_name, path)
        except OSError as exc:
            raise _save_error(path, exc) from exc
        tmp_name = None
    finally:
        if tmp_name and os.path.exists(tmp_name):
            os.unlink(tmp_name)


def _save_error(path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc)
    return OutputError(f"Could not save {path}: {reason}. Any existing file there is unchanged.")


def remove_stale_temp_files(folder: Path, max_age_s: float = STALE_TEMP_AGE_S) -> list[Path]:
    """Delete the temp files a killed ``write_atomically`` left in ``folder`` (SIGKILL, power loss:
    no ``finally`` runs), and return them. Only regular files named in our pattern, owned by this
    user and untouched for ``max_age_s`` go: never another file, nor a write still running."""
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed  # cleaning is a courtesy; the write itself reports real trouble
    for entry in entries:
        if not _OUR_TEMP_FILE.fullmatch(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            ours = not hasattr(os, "getuid") or info.st_uid == os.getuid()
            if stat.S_ISREG(info.st_mode) and ours and now - info.st_mtime > max_age_s:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def create_unique_folder(parent: Path, name: str) -> Path:
    """``parent/name``, or ``name_2``, ``name_3`` … : the first that ``os.mkdir`` creates. The
    creation is the test, so two processes starting in the same second never pick the same
    folder (checking first and creating after leaves a gap another process can fall into)."""
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, MAX_NAME_ATTEMPTS + 1):
        path = parent / (name if n == 1 else f"{name}_{n}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise OutputError(f"Cannot create a folder for {name} in {parent}: {MAX_NAME_ATTEMPTS:,} names are taken")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- reading -----------------------------------------------------------------------------------


def require_regular_file(path: PathLike, what: str, error: type[WorkbenchError] = WorkbenchError) -> os.stat_result:
    """The file's status, or ``error`` when ``path`` is missing or not a regular file.

    ``os.stat`` never blocks, unlike ``open`` on a named pipe (which waits for a writer) or a read
    of a device (which never ends), so this is asked before any reader opens a path. Symbolic
    links are followed: a link to a file is that file.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise error(f"Cannot read {what} {path}: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{what} {path} is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {path} is {describe_kind(info.st_mode)}, not a regular file, so it is not opened")
    return info


def open_regular_file(path: PathLike, what: str, error: type[WorkbenchError] = WorkbenchError) -> BinaryIO:
    """``open(path, "rb")`` for a regular file only, without ever blocking.

    The open itself is non-blocking and the check is repeated on the open descriptor, so a path
    swapped for a named pipe between the check and the open is refused too.
    """
    require_regular_file(path, what, error)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(f"Cannot read {what} {path}: {exc.strerror or exc}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{what} {path} is {describe_kind(mode)}, not a regular file, so it is not opened")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_json(
    path: PathLike, what: str, error: type[WorkbenchError] = WorkbenchError, max_bytes: int = MAX_JSON_BYTES
) -> Any:
    """A small JSON file's value; ``error`` with one line for anything else: not a regular file,
    larger than ``max_bytes``, not UTF-8, not JSON, or nested too deeply for the parser."""
    with open_regular_file(path, what, error) as f:
        try:
            raw = f.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"Cannot read {what} {path}: {exc.strerror or exc}") from exc
    if len(raw) > max_bytes:
        raise error(f"{what} {path} is larger than {max_bytes // 2**20} MB, far more than such a file holds")
    return parse_json(raw, f"{what} {path}", error)


def parse_json(raw: bytes | str, what: str, error: type[WorkbenchError] = WorkbenchError) -> Any:
    """``json.loads`` with its failures as one ``error``: bad UTF-8, bad JSON, numbers too long to
    convert, nesting deeper than Python's recursion limit."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise error(f"{what} nests its JSON too deeply to be read") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise error(f"{what} is not valid JSON ({exc})") from exc
