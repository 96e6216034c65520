"""Per-frame CPU time of each task's frame loop, against the frame budget.

For every built-in task, one block is played by the simulated participant in
a real PsychoPy window; the runner records, for each stimulus frame, the time
from the return of one ``flip()`` to the next ``flip()`` call: drawing the
stimulus (and signal or cue), polling for the response, the flip callbacks'
bookkeeping, i.e. everything but the wait for the vertical blank. Printed:
median, 99th percentile and maximum per task, and the share of the frame
budget at 60 Hz (16.7 ms) and 144 Hz (6.9 ms) that the p99 uses.

Under Xvfb the window is rendered in software (Mesa llvmpipe) and there is no
refresh; the numbers are then an upper bound of the CPU side on that machine,
not a measure of display timing.

Usage: ``python benchmarks/task_frames.py [--trials N]``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from machine import describe  # same folder: one description of the machine

from stimtrain.tasks import SimulatedParticipant, open_window, virtual_display
from stimtrain.tasks.runner import run_task_block

#: Short phases: only the stimulus frames are measured, so fixation and ITI
#: only cost wall time.
PARAMS = {
    "flanker": {"fixation_s": 0.05, "iti_s": 0.05},
    "stroop": {"fixation_s": 0.05, "iti_s": 0.05},
    "gonogo": {"fixation_s": 0.05, "iti_s": 0.05},
    "stopsignal": {"fixation_s": 0.05, "iti_s": 0.05},
    "nback": {"deadline_s": 0.8},
    "switching": {"fixation_s": 0.05, "iti_s": 0.05, "cti_s": [0.1]},
}
BUDGETS_HZ = (60, 144)


def measure(win, name: str, n_trials: int, folder: Path) -> np.ndarray:
    """Return the per-frame CPU times (s) of one simulated block of ``name``."""
    frames: list[float] = []
    run_task_block(
        win,
        name,
        PARAMS[name],
        n_trials=n_trials,
        seed=0,
        tsv_path=folder / f"{name}.tsv",
        emit=lambda *a, **k: None,
        participant=SimulatedParticipant(seed=0),
        frame_times=frames,
    )
    return np.asarray(frames)


def gl_renderer() -> str:
    """Return the OpenGL renderer of the current context (e.g. llvmpipe)."""
    import ctypes

    from pyglet.gl import GL_RENDERER, glGetString

    value = ctypes.cast(glGetString(GL_RENDERER), ctypes.c_char_p).value
    return value.decode() if value else "unknown"


def main(argv: list[str] | None = None) -> None:
    """Measure every task and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30, help="trials per task")
    args = parser.parse_args(argv)
    with virtual_display() as display, tempfile.TemporaryDirectory() as tmp:
        win = open_window(size=(1024, 768))
        renderer = gl_renderer()
        try:
            results = {
                name: measure(win, name, args.trials, Path(tmp)) for name in PARAMS
            }
        finally:
            win.close()
    print(f"Machine: {describe()}")
    print(f"Display: {'Xvfb ' + display if display else 'existing display'}, "
          f"OpenGL renderer: {renderer}; window 1024x768")  # fmt: skip
    budgets = " | ".join(f"p99 / {hz} Hz budget" for hz in BUDGETS_HZ)
    print(f"\n| task | frames | median | p99 | max | {budgets} |")
    print("|---|---|---|---|---|" + "---|" * len(BUDGETS_HZ))
    for name, t in results.items():
        med, p99, mx = (float(np.percentile(t, q)) * 1e3 for q in (50, 99, 100))
        shares = " | ".join(f"{p99 / (1e3 / hz):.0%}" for hz in BUDGETS_HZ)
        print(
            f"| {name} | {len(t)} | {med:.2f} ms | {p99:.2f} ms | {mx:.2f} ms "
            f"| {shares} |"
        )


if __name__ == "__main__":
    main()
