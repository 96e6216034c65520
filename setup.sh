#!/usr/bin/env bash
# Set up stimtrain on a fresh Debian/Ubuntu machine: system packages (a virtual
# X server for headless PsychoPy, OpenGL and audio/HID libraries PsychoPy and
# Psychtoolbox load; strace, with which a test sees the journal's fsyncs;
# chromium and its driver, with which the tests read the live view and the
# report in a real browser), a virtual environment in .venv, and stimtrain
# with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

DEBIAN_PACKAGES=(
  xvfb libgl1 libglu1-mesa libgl1-mesa-dri libegl1
  libxi6 libxrandr2 libxxf86vm1 libxkbcommon0 libxkbcommon-x11-0 libxcursor1 libxinerama1
  libasound2 libportaudio2 libusb-1.0-0 libjack-jackd2-0 libxcb-cursor0
  strace
  chromium chromium-driver
)
if command -v apt-get >/dev/null; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  missing=()
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
else
  echo "setup.sh: no apt-get; install Xvfb and OpenGL libraries with your package manager" >&2
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
echo "stimtrain is installed in .venv (run: .venv/bin/stimtrain --help)" >&2
