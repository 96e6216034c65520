"""Benchmark: stimtrain's XDF reader against pyxdf and against reading the bytes.

For each timestamp layout a recording of ``--minutes`` of ``--channels``
float32 channels at ``--sfreq`` Hz is written by
``synthetic_xdf.write_layout`` (``tests/analysis``), with a stimtrain marker
stream (one pulse per second) and clock offsets every 5 s:

- ``even``: evenly spaced, 0.5 s chunks, only each chunk's first sample
  stamped (the others deduced, as LabRecorder writes a regular stream);
- ``jittered``: every sample stamped with its own jittered timestamp (an
  amplifier's own clock), 0.5 s chunks;
- ``omitted``: one sample in four stamped, at random, 0.5 s chunks (the
  hardest layout: every sample's place depends on all the flags before it);
- ``small chunks``: every sample stamped, 10 ms chunks (50 samples at 5 kHz);
- ``interleaved``: the channels split over two signal streams (EEG stamped
  per chunk, a 4-channel EMG stamped per sample) whose 0.1 s chunks
  alternate in the file.

Each reader runs in a fresh subprocess with the file in the page cache:

- ``bytes``: ``path.read_bytes()``, the floor;
- ``pyxdf``: ``pyxdf.load_xdf(path)`` (clock sync and dejitter);
- ``stimtrain``: ``load_streams(path)`` (the same corrections, timestamps
  equal to pyxdf's to the bit);
- ``stimtrain windows`` (only when asked): the markers, then the signal in
  ``--window`` around each pulse.

Measured per run: wall and CPU time of the read, and peak memory: the
resident set's high-water mark (``VmHWM``, which counts numpy's buffers,
the C library's and file pages mapped into the process; reset through
``/proc/self/clear_refs`` just before the read) above the resident set
before it. The data returned is the bytes of every ``time_series`` and
``time_stamps`` array handed back.

Two things about this machine (a shared VM): single runs vary by up to 3x
with the other work on it, so each reader runs ``--repeat`` times and the
fastest time and lowest peak are shown; and memory a process touches for
the first time can cost 1-2 s per GB (the host backs the VM's memory
lazily; measured 2.3 s against 0.11 s for touching 0.8 GB), which would
swamp every reader. So each run first touches and frees twice the file's
size, then reads; ``--cold`` skips that.

Usage: ``python benchmarks/xdf_read.py [--minutes 10] [--repeat 5]
[--layouts even jittered] [--readers bytes stimtrain] [--keep] [--cold]``;
``--minutes 1 --repeat 2`` is a quick run. With ``--keep`` the files stay
in /tmp and are reused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from machine import describe  # same folder: one machine description

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "analysis"))

from synthetic_xdf import LAYOUTS, write_layout  # noqa: E402

# (imports, timed code) per reader; imports are not timed.
READERS = {
    "bytes": (
        "from pathlib import Path",
        """
        data = Path(PATH).read_bytes()
        streams = [dict(time_series=np.frombuffer(data, np.uint8),
                        time_stamps=np.zeros(0))]
    """,
    ),
    "stimtrain": (
        "from stimtrain.xdf.load import load_streams",
        """
        streams = load_streams(PATH, verbose="error")
    """,
    ),
    "pyxdf": (
        "import pyxdf",
        """
        streams, _ = pyxdf.load_xdf(PATH)
    """,
    ),
    "stimtrain windows": (
        "from stimtrain.xdf.load import load_streams",
        """
        markers = load_streams(PATH, select="Markers", verbose="error")[0]
        t = markers["time_stamps"]
        windows = np.column_stack((t + WINDOW[0], t + WINDOW[1]))
        streams = load_streams(PATH, select=["EEG", "EMG"], windows=windows,
                               verbose="error")
        streams.append(markers)
    """,
    ),
}

CHILD = """
import json, time
import numpy as np
PATH, WINDOW, WARM = {path!r}, {window!r}, {warm!r}
{setup}
def status_kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
if WARM:
    # Touch and free memory first (see --cold), then reset the high-water mark.
    np.ones(WARM, np.uint8)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
base = status_kb("VmRSS:")
t0 = time.perf_counter()
c0 = time.process_time()
{code}
cpu = time.process_time() - c0
wall = time.perf_counter() - t0
peak = status_kb("VmHWM:")
nbytes = 0
for s in streams:
    ts = s["time_series"]
    nbytes += ts.nbytes if hasattr(ts, "nbytes") else 0
    nbytes += np.asarray(s["time_stamps"]).nbytes
print(json.dumps(dict(wall=wall, cpu=cpu, peak_kb=peak, base_kb=base, data=nbytes)))
"""


def warm_up(path: Path) -> None:
    """Flush the file to disk, then read it once: every reader starts warm."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
        while f.read(1 << 24):
            pass


def run_reader(name: str, path: Path, window, warm: int) -> dict:
    setup, code = READERS[name]
    code = textwrap.dedent(code).strip()
    child = CHILD.format(
        path=str(path), window=tuple(window), warm=warm, setup=setup, code=code
    )
    out = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def best(runs: list[dict]) -> dict:
    """The fastest wall and CPU times and the lowest peak of several runs."""
    peak = min((r["peak_kb"] - r["base_kb"]) * 1024 for r in runs)
    return dict(
        wall=min(r["wall"] for r in runs),
        cpu=min(r["cpu"] for r in runs),
        peak=peak,
        data=runs[0]["data"],
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--sfreq", type=float, default=5000.0)
    parser.add_argument("--layouts", nargs="+", default=LAYOUTS, choices=LAYOUTS)
    parser.add_argument(
        "--readers",
        nargs="+",
        default=["bytes", "pyxdf", "stimtrain"],
        choices=list(READERS),
    )
    parser.add_argument("--window", type=float, nargs=2, default=(-0.1, 0.2))
    parser.add_argument(
        "--path", type=Path, default=Path("/tmp/stimtrain_xdf_bench.xdf")
    )
    parser.add_argument("--keep", action="store_true", help="keep the files")
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="runs per reader; the fastest is shown (the machine is shared)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="do not touch memory before each read (see the module notes)",
    )
    args = parser.parse_args(argv)

    print(f"Machine: {describe()}")
    print(
        f"{'layout':<13} {'reader':<18} {'wall s':>7} {'cpu s':>6} {'peak GB':>8} "
        f"{'data GB':>8} {'peak/data':>9} {'/bytes':>7} {'pyxdf/':>7}",
        flush=True,
    )
    for layout in args.layouts:
        path = args.path.with_name(
            f"{args.path.stem}_{layout.replace(' ', '_')}_{args.minutes:g}min_"
            f"{args.channels}ch_{args.sfreq:g}Hz.xdf"
        )
        try:
            t = time.perf_counter()
            if not path.exists():
                write_layout(path, layout, args.minutes * 60, args.channels, args.sfreq)
            size = path.stat().st_size / 1e9
            warm_up(path)
            warm = 0 if args.cold else int(min(2 * size * 1e9, available_bytes() / 3))
            print(
                f"# {layout}: {args.minutes:g} min, {args.channels} ch, "
                f"{args.sfreq:g} Hz float32, {size:.2f} GB, ready in "
                f"{time.perf_counter() - t:.0f} s",
                flush=True,
            )
            results: dict[str, dict] = {}
            for name in args.readers:
                runs = [
                    run_reader(name, path, args.window, warm)
                    for _ in range(args.repeat)
                ]
                results[name] = r = best(runs)
                floor = results.get("bytes", {}).get("wall")
                ref = results.get("pyxdf", {}).get("wall")
                vs_bytes = f"{r['wall'] / floor:7.2f}" if floor else f"{'':>7}"
                vs_pyxdf = f"{ref / r['wall']:7.1f}" if ref else f"{'':>7}"
                print(
                    f"{layout:<13} {name:<18} {r['wall']:>7.2f} {r['cpu']:>6.2f} "
                    f"{r['peak'] / 1e9:>8.2f} {r['data'] / 1e9:>8.2f} "
                    f"{r['peak'] / r['data']:>9.2f} {vs_bytes} {vs_pyxdf}",
                    flush=True,
                )
        finally:
            if not args.keep:
                path.unlink(missing_ok=True)
    print(
        "(/bytes: wall time over reading the file's bytes; pyxdf/: pyxdf's wall "
        f"time over this reader's. Fastest of {args.repeat} runs each, every run "
        "in a fresh process with the file in the page cache"
        + ("" if args.cold else " and memory touched first")
        + "; peak: VmHWM above the resident memory before the read.)"
    )


def available_bytes() -> float:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 4e9


if __name__ == "__main__":
    main()
