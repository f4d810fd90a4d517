"""Writing files safely: every output of the workbench goes through here."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError

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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
