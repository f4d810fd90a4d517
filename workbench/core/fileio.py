"""Writing files safely: every output of the workbench goes through here."""

from __future__ import annotations

import os
import tempfile
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
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"Cannot save to {path}: folder {folder} does not exist")
    if path.is_dir():
        raise OutputError(
            f"Cannot save to {path}: it is a folder; give a file name such as {path / 'adapter.safetensors'}"
        )
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OutputError(f"Could not save {path}: {reason}. Any existing file there is unchanged.") from exc
    finally:
        if tmp_name and os.path.exists(tmp_name):
            os.unlink(tmp_name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
