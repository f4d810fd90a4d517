#!/usr/bin/env bash
# Build LoRA Workbench as a one-folder app with PyInstaller, then smoke-test the result.
#
#   packaging/build.sh              # uses python3 from PATH (a venv with the app installed)
#   PYTHON=.venv/bin/python packaging/build.sh
#   SMOKE_GUI=0 packaging/build.sh  # skip starting the window (no Qt platform libraries)
#
# The torch installed in that Python is the one bundled: install the CPU wheel for a small build
# or a CUDA wheel for NVIDIA GPUs first (packaging/README.md). Output: dist/lora-workbench/.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
DIST=dist/lora-workbench
APP=$DIST/workbench
[[ "${OS:-}" == "Windows_NT" ]] && APP=$DIST/workbench.exe

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

say "Installing PyInstaller"
"$PYTHON" -m pip install --quiet --disable-pip-version-check "pyinstaller>=6.10"
"$PYTHON" -c "import workbench, torch, PySide6" 2>/dev/null \
  || fail "install the app first (pip install torch, then pip install -e .) in $PYTHON's environment"

case "$(uname -s)" in
  Darwin*|MINGW*|MSYS*|CYGWIN*)
    # Windows and macOS want a bitmap icon; PyInstaller converts a PNG with Pillow. Qt draws the SVG.
    say "Rendering resources/icon.svg to build/icon.png"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check pillow
    mkdir -p build
    QT_QPA_PLATFORM=offscreen "$PYTHON" - <<'PY'
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

app = QGuiApplication([])
image = QImage(512, 512, QImage.Format_ARGB32)
image.fill(Qt.transparent)
painter = QPainter(image)
QSvgRenderer("resources/icon.svg").render(painter)
painter.end()
image.save("build/icon.png")
PY
    export WORKBENCH_ICON="$PWD/build/icon.png"
    ;;
esac

say "Building $DIST (PyTorch makes this take a few minutes)"
start=$SECONDS
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath dist --workpath build/pyinstaller packaging/lora-workbench.spec
echo "built in $((SECONDS - start)) s"

say "Smoke test: --help"
"$APP" --help | grep -q "train" || fail "--help did not list the train command"

say "Smoke test: info on a missing file exits 2 with one line and no traceback"
set +e
err=$("$APP" info /nonexistent/adapter.safetensors 2>&1 >/dev/null)
code=$?
set -e
echo "exit $code: $err"
[[ $code -eq 2 ]] || fail "expected exit status 2, got $code"
[[ $(printf '%s\n' "$err" | wc -l) -eq 1 && "$err" == *"does not exist"* && "$err" != *Traceback* ]] \
  || fail "expected one line saying the file does not exist"

if [[ "${SMOKE_GUI:-1}" != 0 && "$(uname -s)" == Linux* ]]; then
  say "Smoke test: the window starts and stays up (offscreen, 15 s)"
  set +e
  QT_QPA_PLATFORM=offscreen WORKBENCH_DATA_DIR="$(mktemp -d)" timeout 15 "$APP" >/dev/null 2>build/gui-smoke.log
  code=$?
  set -e
  [[ $code -eq 124 ]] || { cat build/gui-smoke.log >&2; fail "the window exited with status $code"; }
  echo "still running after 15 s: ok"
fi

say "Done"
du -sh "$DIST"
echo "Run it: $APP (no arguments opens the window; see packaging/README.md to install the desktop entry)"
