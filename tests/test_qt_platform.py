"""A fresh desktop: when Qt could not open a window, `workbench` says why in one line (exit 2)
instead of Qt's abort (exit 134). Every failure is faked here, so the tests pass on any machine."""

import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.gui import qt_platform
from workbench.gui.qt_platform import APT_LINE, not_found_in, window_problem, x_display_reachable

LDD_REPORT = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6XcbQpa.so.6 => /site-packages/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f00)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007f00)
\tlibxcb-icccm.so.4 => not found
\t/lib64/ld-linux-x86-64.so.2 (0x00007f00)
"""
X11 = {"DISPLAY": ":0"}


def fine_libraries():
    return []


def always_reachable(display):
    return True


def test_no_display_is_named():
    for env in ({}, {"QT_QPA_PLATFORM": "xcb"}, {"WAYLAND_DISPLAY": ""}):
        problem = window_problem(env, system="linux", missing_libraries=fine_libraries, reachable=always_reachable)
        assert "no display" in problem and "DISPLAY" in problem and "\n" not in problem


def test_missing_libraries_are_named_with_the_apt_line():
    problem = window_problem(
        X11, system="linux", missing_libraries=lambda: not_found_in(LDD_REPORT), reachable=always_reachable
    )
    assert "needs libxcb-cursor.so.0, libxcb-icccm.so.4, not installed" in problem
    assert APT_LINE in problem and "\n" not in problem


def test_a_display_nobody_answers_at_is_named():
    env = {"DISPLAY": ":42"}
    problem = window_problem(env, system="linux", missing_libraries=fine_libraries, reachable=lambda d: False)
    assert "no X server answers at DISPLAY=:42" in problem


@pytest.mark.parametrize(
    ("env", "system"),
    [
        ({"QT_QPA_PLATFORM": "offscreen"}, "linux"),  # tests, CI
        ({"QT_QPA_PLATFORM": "vnc:size=800x600"}, "linux"),
        ({"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland", "DISPLAY": ":0"}, "linux"),
        ({}, "darwin"),  # the macOS and Windows plugins need no system libraries or display variable
        ({}, "win32"),
    ],
)
def test_no_xcb_no_question(env, system):
    def must_not_ask():
        raise AssertionError("the xcb libraries do not matter here")

    assert window_problem(env, system=system, missing_libraries=must_not_ask, reachable=always_reachable) is None


def test_a_working_x11_desktop_passes():
    assert window_problem(X11, system="linux", missing_libraries=fine_libraries, reachable=always_reachable) is None


def test_ldd_report_parsing_keeps_each_library_once():
    assert not_found_in(LDD_REPORT) == ["libxcb-cursor.so.0", "libxcb-icccm.so.4"]
    assert not_found_in("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n") == []


def test_the_real_plugin_check_runs_here():
    """Whatever this machine lacks, the answer is a list of library names (nothing is asserted
    about which: that depends on the machine)."""
    missing = qt_platform.missing_xcb_libraries()
    assert isinstance(missing, list) and all(re.fullmatch(r"lib\S+\.so(\.\d+)*", name) for name in missing)
    assert qt_platform.xcb_plugin() is None or qt_platform.xcb_plugin().name == "libqxcb.so"


def test_x_display_reachable_connects_to_the_socket():
    number = 9000 + uuid.uuid4().int % 900  # a display number nobody uses
    assert not x_display_reachable(f":{number}", timeout=0.5)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(f"\0/tmp/.X11-unix/X{number}")  # Linux's abstract name: no file is created
    server.listen(1)
    try:
        assert x_display_reachable(f":{number}.0", timeout=0.5)
        assert x_display_reachable(f"unix:{number}", timeout=0.5)
    finally:
        server.close()
    assert x_display_reachable("/private/tmp/com.apple.launchd.x/org.xquartz:0")  # not ours to judge


def test_cli_prints_one_line_and_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(qt_platform, "x_display_reachable", always_reachable)
    monkeypatch.setattr(qt_platform, "missing_xcb_libraries", lambda: ["libxcb-cursor.so.0"])
    assert main([]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("workbench: error: cannot open the window")
    assert "libxcb-cursor.so.0" in err and "sudo apt-get install libxcb-cursor0" in err


def test_without_a_display_the_command_exits_2_not_134(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "workbench"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "no display" in result.stderr


def test_readme_gives_the_same_apt_line():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert APT_LINE in readme and "sudo dnf install" in readme
