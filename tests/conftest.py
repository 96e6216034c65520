"""Test configuration: LSL stays on this machine; PsychoPy gets a virtual display."""

import os
import subprocess
from pathlib import Path

import pytest

from stimtrain.orchestrator.session.lslconfig import use_local_lsl

# Must be set before liblsl initialises, i.e. before pylsl is first used.
use_local_lsl()


@pytest.fixture
def mount_tmpfs(tmp_path):
    """Factory: ``mount_tmpfs("64m")`` mounts a tmpfs of that size in tmp_path.

    Mounting needs root (and a kernel that permits it): the test is skipped
    with the reason otherwise. Every mount is unmounted after the test.
    """
    mounted = []

    def mount(size: str, name: str = "data") -> Path:
        path = tmp_path / name
        path.mkdir()
        if os.geteuid() != 0:
            pytest.skip("mounting a small filesystem needs root")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(
                f"mounting a tmpfs is not permitted here: {done.stderr.strip()}"
            )
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def browser():
    """A real headless chromium (selenium WebDriver), quit after the test."""
    from browser import chromium_missing, start_chromium

    why = chromium_missing()
    if why:
        pytest.skip(why)
    driver = start_chromium()
    yield driver
    driver.quit()
