"""Benchmark: ``stimtrain validate`` on the worst inputs it must refuse quickly.

Each input is written to a temporary folder and validated by the real command
(``python -m stimtrain.cli validate FILE``) in its own
subprocess, whose wall time and peak resident memory (``ru_maxrss`` of that
child, from ``os.wait4``) are printed with its exit status and first line.
Before the bounds of :mod:`stimtrain.orchestrator.language.bounds` these hung for
minutes, took gigabytes or ended in a RecursionError traceback.

Usage: ``python benchmarks/bounded_input.py [--repeat N]`` (best of N runs).
tests/orchestrator/test_bounds.py runs the same inputs with sanity bounds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_HEAD = "stimtrain: 1\nname: worst\n"
_REST = "blocks:\n  - type: rest\n    duration: 1 s\n"


def alias_bomb(folder: Path) -> Path:
    """Ten levels of ten aliases: 10**10 values once expanded (a few lines)."""
    lines = ["x:", "  a0: &a0 [" + ", ".join(["x"] * 10) + "]"]
    for level in range(1, 10):
        aliases = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"  a{level}: &a{level} [{aliases}]")
    path = folder / "alias_bomb.yaml"
    path.write_text(_HEAD + "\n".join(lines) + "\n" + _REST)
    return path


def nested_repeats(folder: Path) -> Path:
    """Three repeats of 10**9 nested in each other: 10**27 blocks unrolled."""
    text = _HEAD + "blocks:\n"
    indent = "  "
    for _ in range(3):
        text += f"{indent}- type: repeat\n{indent}  times: 1000000000\n"
        text += f"{indent}  blocks:\n"
        indent += "    "
    text += f"{indent}- type: rest\n{indent}  duration: 1 s\n"
    path = folder / "nested_repeats.yaml"
    path.write_text(text)
    return path


def deep_nesting(folder: Path) -> Path:
    """A value nested 100,000 lists deep (PyYAML's composer recursed per level)."""
    depth = 100_000
    path = folder / "deep_nesting.yaml"
    path.write_text(_HEAD + "x: " + "[" * depth + "]" * depth + "\n" + _REST)
    return path


def trillion_pulses(folder: Path) -> Path:
    """One single-pulse block of 10**12 pulses."""
    path = folder / "trillion_pulses.yaml"
    path.write_text(
        _HEAD + "blocks:\n  - type: stimulate\n    pattern: single\n"
        "    intensity: 50 %MSO\n    pulses: 1000000000000\n    interval: 1 s\n"
    )
    return path


def pulses_at_the_bound(folder: Path) -> Path:
    """Two blocks of 100,000 single pulses: the most a protocol may hold, all
    compiled and judged (refused only by the session and day caps)."""
    path = folder / "pulses_at_the_bound.yaml"
    block = (
        "  - type: stimulate\n    pattern: single\n"
        "    intensity: 50 %MSO\n    pulses: 100000\n    interval: 2 s\n"
    )
    path.write_text(_HEAD + "blocks:\n" + block * 2)
    return path


def huge_file(folder: Path) -> Path:
    """50 MB: a protocol followed by a comment of 50 million characters."""
    path = folder / "huge_file.yaml"
    with path.open("w") as f:
        f.write(_HEAD + _REST + "# ")
        chunk = "x" * (1 << 20)
        for _ in range(50):
            f.write(chunk)
        f.write("\n")
    return path


def tiny_values(folder: Path) -> Path:
    """Just under the size bound: 500,000 one-character values in one list."""
    path = folder / "tiny_values.yaml"
    path.write_text(_HEAD + "x: [" + ",".join(["a"] * 500_000) + "]\n" + _REST)
    return path


def fifo(folder: Path) -> Path:
    """A named pipe no one writes to (opening it for reading used to block)."""
    path = folder / "fifo.yaml"
    os.mkfifo(path)
    return path


#: Name -> writer of the worst input into a folder (returns the file).
WORST: dict[str, Callable[[Path], Path]] = {
    "alias bomb 10 x 10": alias_bomb,
    "repeat 10**9 nested 3 deep": nested_repeats,
    "100,000-deep nesting": deep_nesting,
    "10**12 pulses": trillion_pulses,
    "50 MB file": huge_file,
    "1 MiB of tiny values": tiny_values,
    "FIFO": fifo,
}


#: Inputs within the bounds that still ask for the most work.
WITHIN_BOUNDS: dict[str, Callable[[Path], Path]] = {
    "200,000 pulses (at the bound)": pulses_at_the_bound,
}


@dataclass
class Run:
    """One ``stimtrain validate`` subprocess: how it ended and what it cost."""

    status: int
    seconds: float
    peak_mib: float
    stdout: str
    stderr: str


#: Runs ``stimtrain validate`` and, at exit, prints its own peak resident
#: memory (VmHWM, KiB) as the last line of stderr.
_CHILD = (
    "import atexit, sys\n"
    "def _peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            print('VmHWM', line.split()[1], file=sys.stderr, flush=True)\n"
    "atexit.register(_peak)\n"
    "from stimtrain.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def run_validate(path: Path, *, timeout: float = 120.0) -> Run:
    """Run ``stimtrain validate path`` in a subprocess; measure that child alone.

    The peak is the child's own high-water mark after it started Python
    (``VmHWM``, read by the child at exit): the rusage of a child counts the
    memory of the process it was forked from, which in a test worker is far
    more than the validator's. It is killed after ``timeout`` seconds
    (status -9).
    """
    command = [sys.executable, "-c", _CHILD, "validate"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen([*command, str(path)], stdout=out, stderr=err)
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
        peak = float("nan")
        lines = stderr.splitlines()
        if lines and lines[-1].startswith("VmHWM "):
            peak = int(lines[-1].split()[1]) / 1024
            stderr = "".join(f"{ln}\n" for ln in lines[:-1])
        return Run(
            status=child.returncode,
            seconds=seconds,
            peak_mib=peak,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=stderr,
        )


def main() -> None:
    """Print the machine, then time and peak memory of each worst input."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import describe  # same folder: one machine description

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs")
    args = parser.parse_args()
    print(f"machine: {describe()}")
    baseline = None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ok = folder / "ok.yaml"
        ok.write_text(_HEAD + _REST)
        baseline = min((run_validate(ok) for _ in range(args.repeat)), key=_cost)
        print(
            f"{'a valid 3-line protocol (baseline)':30} {baseline.seconds:6.2f} s "
            f"{baseline.peak_mib:6.0f} MiB  exit {baseline.status}"
        )
        for name, write in {**WORST, **WITHIN_BOUNDS}.items():
            path = write(folder)
            size = path.stat().st_size
            runs = [run_validate(path) for _ in range(args.repeat)]
            best = min(runs, key=_cost)
            first = (best.stdout or best.stderr).strip().splitlines() or [""]
            line = first[0].replace(str(folder) + os.sep, "")
            print(
                f"{name:30} {best.seconds:6.2f} s {best.peak_mib:6.0f} MiB  "
                f"exit {best.status}  ({size} bytes)\n    {line[:150]}"
            )


def _cost(run: Run) -> float:
    return run.seconds


if __name__ == "__main__":
    main()
