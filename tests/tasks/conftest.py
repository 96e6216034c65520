"""Fixtures for the task tests: one virtual display and one window per session."""

from __future__ import annotations

import pytest

from stimtrain.tasks import open_window, virtual_display


@pytest.fixture(scope="session")
def display():
    """An X display: the existing one, or an Xvfb started for the session."""
    with virtual_display() as name:
        yield name


@pytest.fixture(scope="session")
def win(display):
    """One small PsychoPy window shared by all tests (opening one takes ~1 s)."""
    window = open_window(size=(640, 480))
    yield window
    window.close()
