"""The errors the core raises for things a user can get wrong.

Every user-facing failure is a ``WorkbenchError`` with a message written for a person, so the CLI
can print one line and the window can show one dialog without a traceback. Anything else that
escapes is a bug.
"""


def shorten(names: list[str], limit: int) -> str:
    """The first ``limit`` names, comma-separated, with "…" when there are more: for messages."""
    return ", ".join(names[:limit]) + (" …" if len(names) > limit else "")


class WorkbenchError(Exception):
    """A problem the user can fix; ``str(error)`` is the whole message."""


class ConfigError(WorkbenchError):
    """Settings that cannot work together (every problem is listed in the message)."""


class DataError(WorkbenchError):
    """A dataset file that cannot be read or used for training."""


class CheckpointError(WorkbenchError):
    """Model weights that are missing, unreachable or not a GPT-2 checkpoint."""


class DownloadError(WorkbenchError):
    """A download that failed (no network, server error, dropped connection)."""


class OutputError(WorkbenchError):
    """An output file could not be written; whatever was there before is unchanged."""


class OutputRefused(OutputError):
    """An output the user named cannot be used (it is an input, a folder, in a missing folder):
    a mistake in the command, refused before any work, so nothing was written."""


class AdapterError(WorkbenchError):
    """An adapter file that is unreadable, corrupt or made for another base model."""


class NotFinite(WorkbenchError):
    """A model output that is NaN or infinite (weights too large for the arithmetic): refused,
    never shown as a probability."""


class Diverged(NotFinite):
    """Training whose loss or weights stopped being finite numbers (NaN or infinity)."""


class Cancelled(WorkbenchError):
    """Long work stopped because the user asked it to."""
