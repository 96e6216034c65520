"""Tests of the virtual display helper."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stimtrain.tasks import DisplayError, virtual_display
from stimtrain.tasks import display as display_mod


def test_existing_display_is_used(monkeypatch):
    """With DISPLAY set nothing is started."""
    monkeypatch.setenv("DISPLAY", ":4242")
    with virtual_display() as name:
        assert name is None
        assert os.environ["DISPLAY"] == ":4242"


def test_missing_xvfb_says_what_to_install(monkeypatch):
    """Without Xvfb the error names the Debian package."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setattr(display_mod.shutil, "which", lambda name: None)
    with pytest.raises(DisplayError, match="install the Debian package xvfb"):
        with virtual_display():
            pass


def test_forced_display_starts_and_stops_xvfb():
    """A forced display sets DISPLAY, serves X, and is gone afterwards.

    Run in a fresh interpreter: once Psychtoolbox's keyboard has been used in
    a process, Xvfb is deliberately left running until that process exits.
    """
    code = """
import os, subprocess, time
from stimtrain.tasks import virtual_display
os.environ["DISPLAY"] = ":4242"
with virtual_display((320, 240), force=True) as name:
    assert os.environ["DISPLAY"] == name != ":4242", name
    sock = f"/tmp/.X11-unix/X{name[1:]}"
    assert os.path.exists(sock), sock
assert os.environ["DISPLAY"] == ":4242"
for _ in range(50):
    if not os.path.exists(sock):
        break
    time.sleep(0.1)
assert not os.path.exists(sock), "Xvfb still running"
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
