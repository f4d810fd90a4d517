"""Can Qt open a window here? Asked before the QApplication exists, because Qt cannot answer.

When no platform plugin loads, QApplication's constructor prints several lines about plugins
and aborts the process (exit 134), with nothing the caller can catch. On a fresh Debian or Ubuntu
desktop that happens because PySide6's wheel ships the xcb plugin but not the system libraries it
links (libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1, …); on a server, because there is no display
at all, or a DISPLAY nothing answers at. All are checked here, without importing Qt, so
``workbench`` can say which in one line.
Nothing here imports PySide6: it locates the plugin file and asks the dynamic linker (``ldd``)
what it cannot find.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

# What PySide6's QtCore/QtGui/QtWidgets/QtSvg/QtOpenGL and its xcb plugin (libqxcb.so, with
# libQt6XcbQpa) link beyond the packages every Debian has, as Debian/Ubuntu packages: found with
# `ldd` on PySide6 6.11's libraries on Debian 12 and checked against the packages' dependency
# closure (apt-cache depends --recurse). libxcb-xinerama0, often listed for Qt 5, is not linked by
# Qt 6. README's install section gives the same line (a test compares them).
DEBIAN_PACKAGES = (
    "libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-randr0 "
    "libxcb-shape0 libxcb-sync1 libxcb-xfixes0 libxcb-xkb1 libxkbcommon-x11-0 libx11-xcb1 libegl1 "
    "libgl1 libfontconfig1 libdbus-1-3 libglib2.0-0"
)
APT_LINE = f"sudo apt-get install {DEBIAN_PACKAGES}"

# Platforms that draw without a display server (tests, remote framebuffers).
_HEADLESS = {"offscreen", "minimal", "minimalegl", "vnc", "linuxfb", "eglfs", "vkkhrdisplay"}


def window_problem(
    env: Mapping[str, str] | None = None,
    *,
    system: str = sys.platform,
    missing_libraries: Callable[[], list[str]] | None = None,
    reachable: Callable[[str], bool] | None = None,
) -> str | None:
    """Why Qt could not open a window here (one line for a person), or None when it should.

    ``missing_libraries`` defaults to asking the linker about the xcb plugin, ``reachable`` to
    connecting to the X server's socket (tests fake both)."""
    env = os.environ if env is None else env
    if not system.startswith("linux"):
        return None  # macOS and Windows plugins ship with the wheel and need no display variable
    platforms = _requested_platforms(env)
    if platforms and platforms[0] in _HEADLESS:
        return None
    x11, wayland = bool(env.get("DISPLAY")), bool(env.get("WAYLAND_DISPLAY"))
    if not x11 and not wayland:
        return (
            "cannot open the window: there is no display (neither DISPLAY nor WAYLAND_DISPLAY is set). "
            "Start workbench from a desktop session, or use its commands without a window (workbench --help)."
        )
    first = platforms[0] if platforms else ("wayland" if wayland and _wayland_session(env) else "xcb")
    if first != "xcb":
        return None  # Wayland falls back to xcb by itself when its own plugin cannot load
    if not x11:
        return (
            "cannot open the window: Qt was asked for X11 (QT_QPA_PLATFORM=xcb) but DISPLAY is not set. "
            "Unset QT_QPA_PLATFORM to use Wayland, or set DISPLAY."
        )
    display = env.get("DISPLAY", "")
    if not (reachable or x_display_reachable)(display):
        return (
            f"cannot open the window: no X server answers at DISPLAY={display} (closed, or an SSH session "
            "without X forwarding). Start workbench from a desktop session, or use ssh -X."
        )
    missing = (missing_libraries or missing_xcb_libraries)()
    if missing:
        return (
            f"cannot open the window: Qt's X11 plugin needs {', '.join(missing)}, not installed here. "
            f"On Debian/Ubuntu: {APT_LINE} (Fedora: see README, Install)."
        )
    return None


def x_display_reachable(display: str, timeout: float = 2.0) -> bool:
    """Whether an X server accepts connections at ``display`` (":0", "unix:1", "host:10.0").

    Local displays listen on /tmp/.X11-unix/X<n> (and Linux's abstract socket of that name),
    remote ones on TCP port 6000 + n. A form not recognised counts as reachable: Qt decides."""
    found = re.fullmatch(r"(?P<host>[^:/]*)(?:/unix)?:(?P<number>\d+)(?:\.\d+)?", display)
    if not found:
        return True
    host, number = found.group("host"), int(found.group("number"))
    if host in ("", "unix"):
        path = f"/tmp/.X11-unix/X{number}"
        return any(_unix_connects(address, timeout) for address in ("\0" + path, path))
    try:
        socket.create_connection((host, 6000 + number), timeout=timeout).close()
        return True
    except OSError:
        return False


def _unix_connects(address: str, timeout: float) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(address)
        return True
    except OSError:
        return False


def missing_xcb_libraries() -> list[str]:
    """Shared libraries PySide6's xcb plugin links but the system lacks ([] when it cannot tell)."""
    plugin = xcb_plugin()
    if plugin is None:
        return []
    try:
        report = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return _first_missing_by_loading(plugin)
    return not_found_in(report)


def not_found_in(ldd_output: str) -> list[str]:
    """The ``name => not found`` libraries of an ``ldd`` report, each once, in order."""
    names = re.findall(r"^\s*(\S+)\s+=>\s+not found", ldd_output, flags=re.MULTILINE)
    return list(dict.fromkeys(names))


def xcb_plugin() -> Path | None:
    """PySide6's libqxcb.so, found without importing PySide6 (importing it is harmless, but slow)."""
    spec = importlib.util.find_spec("PySide6")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        plugin = Path(folder) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if plugin.is_file():
            return plugin
    return None


def _first_missing_by_loading(plugin: Path) -> list[str]:
    """Without ``ldd``: loading the plugin names the first library the linker cannot find."""
    try:
        ctypes.CDLL(str(plugin))
    except OSError as exc:
        found = re.match(r"(\S+?): cannot open shared object file", str(exc))
        return [found.group(1)] if found else []
    return []


def _requested_platforms(env: Mapping[str, str]) -> list[str]:
    """QT_QPA_PLATFORM's plugins in the order Qt tries them ("wayland;xcb", "xcb:option=1")."""
    value = env.get("QT_QPA_PLATFORM", "")
    return [name.split(":", 1)[0].strip() for name in value.split(";") if name.strip()]


def _wayland_session(env: Mapping[str, str]) -> bool:
    """Qt 6 prefers its Wayland plugin in a Wayland session, else X11 (through XWayland if need be)."""
    return env.get("XDG_SESSION_TYPE", "").lower() == "wayland" or not env.get("DISPLAY")
