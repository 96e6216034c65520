"""Benchmark: stimtrain's XDF reader against pyxdf on a long, dense recording.

Writes (numpy XDF writer of ``tests/analysis/synthetic_xdf.py``) a file of
``--minutes`` of ``--channels`` float32 channels at ``--sfreq`` Hz in 0.5 s
chunks, every sample with its timestamp as an amplifier's would have, plus a
stimtrain marker stream with one pulse per second and clock offsets every 5 s.
Then each reader runs in a fresh subprocess that reports its wall time and its
peak resident memory (``ru_maxrss``) above the interpreter's before loading:

- ``pyxdf``: ``pyxdf.load_xdf(path)`` (defaults: clock sync, dejitter);
- ``stimtrain full``: ``load_streams(path)`` (same corrections);
- ``stimtrain windows``: the markers, then the signal in ``--window`` around
  each pulse (``load_streams(path, select=..., windows=...)``).

Usage: ``python benchmarks/xdf_read.py [--minutes 1 10 60] [--repeat 3]
[--keep] [--pyxdf-max-minutes 20]``. Files are deleted afterwards unless ``--keep``.
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

import numpy as np
from machine import describe  # same folder: one machine description

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "analysis"))

from synthetic_xdf import XdfWriter  # noqa: E402

# (imports, timed code) per reader; imports are not timed.
READERS = {
    "pyxdf": (
        "import pyxdf",
        """
        streams, _ = pyxdf.load_xdf(PATH)
    """,
    ),
    "stimtrain full": (
        "from stimtrain.xdf.load import load_streams",
        """
        streams = load_streams(PATH, verbose="error")
    """,
    ),
    "stimtrain windows": (
        "from stimtrain.xdf.load import load_streams",
        """
        markers = load_streams(PATH, select="Markers", verbose="error")[0]
        t = markers["time_stamps"]
        windows = np.column_stack((t + WINDOW[0], t + WINDOW[1]))
        streams = load_streams(PATH, select="EEG", windows=windows, verbose="error")
        streams.append(markers)
    """,
    ),
}

CHILD = """
import json, resource, time
import numpy as np
PATH, WINDOW = {path!r}, {window!r}
{setup}
def rss_kb():
    # Current resident set (kB) from /proc: the baseline before loading.
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
base = rss_kb()
t0 = time.perf_counter()
{code}
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
nbytes = 0
for s in streams:
    ts = s["time_series"]
    nbytes += ts.nbytes if hasattr(ts, "nbytes") else 0
    nbytes += np.asarray(s["time_stamps"]).nbytes
n = max(len(s["time_stamps"]) for s in streams)
print(json.dumps(dict(wall=wall, peak_kb=peak, base_kb=base, data=nbytes, n=n)))
"""


def available_gib() -> float:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def write_file(path: Path, minutes: float, channels: int, sfreq: float) -> float:
    """Write the benchmark recording; return its size in GB."""
    rng = np.random.default_rng(0)
    chunk = int(sfreq // 2)
    n_chunks = int(round(minutes * 60 * sfreq / chunk))
    # Ten seconds of noise reused with a per-chunk offset: generating 4.6 GB
    # of fresh random numbers would dominate the writing time.
    pool = rng.standard_normal((20 * chunk, channels), dtype=np.float32) * 10
    t0 = 1000.0
    duration = n_chunks * chunk / sfreq
    with XdfWriter(path) as w:
        ch = [
            dict(label=f"E{i + 1}", unit="microvolts", type="EEG")
            for i in range(channels)
        ]
        w.add_stream(1, "BenchEEG", "EEG", channels, sfreq, "float32", ch)
        w.add_stream(2, "stimtrain-markers-bench", "Markers", 1, 0, "string")
        next_marker, next_clock = 1, 0.0
        for c in range(n_chunks):
            start = c * chunk
            t = t0 + (start + np.arange(chunk)) / sfreq
            values = pool[(c % 20) * chunk : (c % 20 + 1) * chunk] + np.float32(c % 7)
            w.write_samples(1, values, t)
            now = (start + chunk) / sfreq
            while next_marker < now and next_marker < duration - 1:
                text = json.dumps(dict(event="pulse", pulse=next_marker))
                w.write_samples(2, [[text]], [t0 + next_marker + 0.0004])
                next_marker += 1
            if now >= next_clock:
                for sid in (1, 2):
                    w.write_clock_offset(sid, t0 + now, 1e-5 * np.sin(now))
                next_clock += 5.0
        w.write_footer(1, t0, t0 + (n_chunks * chunk - 1) / sfreq, n_chunks * chunk)
        w.write_footer(2, t0 + 1.0004, t0 + next_marker - 1 + 0.0004, next_marker - 1)
    return path.stat().st_size / 1e9


def warm_up(path: Path) -> None:
    """Flush the file to disk, then read it once: every reader starts warm."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
        while f.read(1 << 24):
            pass


def run_reader(name: str, path: Path, window) -> dict:
    setup, code = READERS[name]
    code = textwrap.dedent(code).strip()
    child = CHILD.format(path=str(path), window=tuple(window), setup=setup, code=code)
    out = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[60.0])
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--sfreq", type=float, default=5000.0)
    parser.add_argument(
        "--pyxdf-max-minutes",
        type=float,
        default=60.0,
        help="skip pyxdf on longer files (it needs ~9 GB per hour)",
    )
    parser.add_argument("--window", type=float, nargs=2, default=(-0.1, 0.2))
    parser.add_argument(
        "--path", type=Path, default=Path("/tmp/stimtrain_xdf_bench.xdf")
    )
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per reader; the fastest is shown (the machine is shared)",
    )
    parser.add_argument(
        "--readers", nargs="+", default=list(READERS), choices=list(READERS)
    )
    args = parser.parse_args(argv)

    print(f"Machine: {describe()}")
    print(
        f"{'reader':<20} {'file':>8} {'wall s':>8} {'peak GB':>8} "
        f"{'data GB':>8} {'peak/data':>9} {'samples':>11}",
        flush=True,
    )
    for minutes in args.minutes:
        path = args.path.with_name(f"{args.path.stem}_{minutes:g}min.xdf")
        try:
            t = time.perf_counter()
            size = write_file(path, minutes, args.channels, args.sfreq)
            warm_up(path)
            print(
                f"# {path.name}: {minutes:g} min, {args.channels} ch, "
                f"{args.sfreq:g} Hz float32, {size:.2f} GB, written in "
                f"{time.perf_counter() - t:.0f} s",
                flush=True,
            )
            for name in args.readers:
                if name == "pyxdf" and minutes > args.pyxdf_max_minutes:
                    continue
                runs = [run_reader(name, path, args.window) for _ in range(args.repeat)]
                r = min(runs, key=lambda run: run["wall"])
                peak = (r["peak_kb"] - r["base_kb"]) * 1024 / 1e9
                data = r["data"] / 1e9
                print(
                    f"{name:<20} {minutes:>6g}mn {r['wall']:>8.1f} {peak:>8.2f} "
                    f"{data:>8.2f} {peak / data:>9.2f} {r['n']:>11}",
                    flush=True,
                )
        finally:
            if not args.keep:
                path.unlink(missing_ok=True)
    print(
        f"(every reader starts with the file in the page cache; memory "
        f"available at the end: {available_gib():.1f} GiB)"
    )


if __name__ == "__main__":
    main()
