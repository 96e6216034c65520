"""Benchmark: a whole session's analysis at lab scale, step by step, two ways.

Writes once (cached in ``--data``) a synthetic single-pulse session as the
simulated rig records it: ``--minutes`` of ``--channels`` 10-10 EEG channels
plus the FDI EMG channel at 5 kHz (float32, every sample stamped), 600 pulses
per hour with the TMS artifact, a TEP of known components, TMS-evoked muscle,
blinks and MEPs (``tests/analysis/synthetic_session.py``, written with the
project's XDF writer). Then each path runs in a fresh process that reports,
per step, its wall time and the process's peak resident memory during the
step (the kernel's high-water mark, reset before each step):

- ``fast``: :func:`read_raw_windows` (only the windows around the pulses,
  kept as float32 and converted per epoch) and :func:`run_tesa`'s defaults
  (Picard);
- ``plain``: what the analysis did before: the whole file as a float64
  RawArray (:func:`read_raw_xdf`'s route, the streams kept as
  ``session_analysis`` keeps them) and FastICA on every sample;
- ``plain-ica``: the fast path's reading and epochs with the plain path's
  ICA (FastICA on every sample), on the long recording: what the ICA
  decisions and TEP peaks are to be compared with at full length.

Steps: read, artifact alignment (the report's pulse table), epochs (with
bad channels and trials), ICA round 1, filters, ICA round 2, TEPs, peaks,
MEPs (with the recruitment fit), report (the HTML report's figures and
tables, saved).

The plain path holds the whole file as float32 and again as float64 (4.6x
the samples on 5 minutes; some 17 GB for an hour, more than a shared 24 GiB
machine can spare): it runs on the same recording only up to
``--plain-minutes``; on a longer one it runs on a recording of
``--plain-minutes`` from the same generator, next to the fast path on that
same recording, and ``plain-ica`` runs the plain ICA on the long one, all in
the same run. Below each table: the components each pair removes (|r| of
their topographies) and the GMFP peaks of their TEPs.

Usage: ``python benchmarks/analysis.py [--minutes 60] [--channels 64]
[--data DIR] [--plain-minutes 5] [--paths fast plain plain-ica]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "tests" / "analysis"))

from machine import describe, steal_ms, steal_since  # noqa: E402

STEPS = (
    "read",
    "align",
    "epochs",
    "ica1",
    "filters",
    "ica2",
    "teps",
    "peaks",
    "meps",
    "report",
)
LABELS = {
    "read": "read",
    "align": "artifact alignment",
    "epochs": "epochs, bad ch./trials",
    "ica1": "ICA round 1",
    "filters": "filters",
    "ica2": "ICA round 2",
    "teps": "TEPs",
    "peaks": "peaks",
    "meps": "MEPs + recruitment",
    "report": "report",
}
#: run_tesa's arguments for each path (the fast one is its defaults).
TESA = {
    "fast": {},
    "plain": dict(ica_method="fastica", ica_decim=None),
    "plain-ica": dict(ica_method="fastica", ica_decim=None),
}
GB = 1e9


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class StepMeter:
    """Time and peak memory of each step (``meter(name)`` is its context)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    @contextmanager
    def __call__(self, name: str):
        # Reset the kernel's high-water mark of this process's resident set,
        # so VmHWM after the step is the step's own peak.
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        start, cpu = time.perf_counter(), time.process_time()
        yield
        self.rows.append(
            dict(
                step=name,
                seconds=time.perf_counter() - start,
                cpu=time.process_time() - cpu,
                peak=_status_kb("VmHWM") * 1024,
                rss=_status_kb("VmRSS") * 1024,
            )
        )
        print(json.dumps(self.rows[-1]), file=sys.stderr, flush=True)


def _report(raw, result, meps, path: Path) -> None:
    """The session report's TEP, GMFP, peak and MEP sections, and a raw look."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mne

    from stimtrain.analysis.tep import gmfp

    report = mne.Report(title="lab-scale benchmark", verbose=False)
    stop = int(20 * raw.info["sfreq"])
    short = mne.io.RawArray(raw.get_data(stop=stop), raw.info, verbose=False)
    report.add_raw(short, title="Raw overview", psd=True, butterfly=False)
    report.add_html(
        "<ol>" + "".join(f"<li>{s}</li>" for s in result.steps) + "</ol>",
        title="TESA steps",
    )
    report.add_html(result.ica.to_html(), title="ICA components removed")
    for name, evoked in result.evokeds.items():
        report.add_evokeds(
            evoked.copy().crop(-0.1, 0.35), titles=[f"TEP: {name}"], n_time_points=6
        )
    ev = result.evokeds["all"]
    fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
    ax.plot(ev.times * 1e3, gmfp(ev) * 1e6, color="k")
    report.add_figure(fig, title="GMFP")
    plt.close(fig)
    report.add_html(result.peaks.to_html(), title="TEP peaks")
    report.add_html(meps.describe().to_html(), title="MEPs")
    report.save(path, open_browser=False, overwrite=True, verbose=False)


def child(path_kind: str, fname: Path, report_path: Path) -> None:
    """Run one path on one recording; print each step's numbers as JSON."""
    import warnings

    import mne

    from stimtrain.analysis.mep import mep_epochs, mep_table
    from stimtrain.analysis.pulse_windows import read_raw_windows
    from stimtrain.analysis.recruitment import fit_recruitment
    from stimtrain.analysis.tep import artifact_alignment
    from stimtrain.analysis.tesa import run_tesa
    from stimtrain.analysis.xdf import _raw_from_streams, load_streams

    mne.set_log_level("ERROR")
    warnings.simplefilter("ignore")
    meter = StepMeter()
    with meter("read"):
        if path_kind in ("fast", "plain-ica"):
            raw = read_raw_windows(fname)
        else:
            # session_analysis keeps the streams for its tables meanwhile.
            streams = load_streams(fname)
            raw = _raw_from_streams(streams)
    with meter("align"):
        artifact_alignment(raw)
    result = run_tesa(raw, timer=meter, **TESA[path_kind])
    with meter("meps"):
        meps = mep_table(mep_epochs(raw))
        kept = meps[~meps["rejected"]]
        fit_recruitment(kept["power"].to_numpy(float), kept["mep_uv"].to_numpy(float))
    with meter("report"):
        _report(raw, result, meps, report_path)
    removed = []
    for _, row in result.ica.iterrows():
        ica = result.icas[int(row["round"])]
        topo = ica.get_components()[:, int(row["component"])]
        removed.append(
            dict(round=int(row["round"]), rule=row["rule"], topo=topo.tolist())
        )
    gm = result.peaks[
        (result.peaks["signal"] == "GMFP") & (result.peaks["evoked"] == "all")
    ]
    summary = dict(
        steps=meter.rows,
        icas={
            r: dict(iterations=int(ica.n_iter_), samples=int(ica.n_samples_))
            for r, ica in result.icas.items()
        },
        n_epochs=len(result.epochs),
        removed=removed,
        peaks=gm[["component", "latency_ms", "amplitude_uv"]].to_dict("records"),
    )
    print(json.dumps(summary))


def recording(data: Path, minutes: float, channels: int):
    """The cached recording of this size, written first if it is not there."""
    from synthetic_session import VERSION, LabRecording, write_lab_recording

    path = data / f"lab-v{VERSION}_{minutes:g}min_{channels}ch_5kHz.xdf"
    rec = LabRecording.load(path)
    if rec is None:
        t = time.perf_counter()
        rec = write_lab_recording(path, minutes=minutes, n_channels=channels)
        print(f"# wrote {path.name} in {time.perf_counter() - t:.0f} s", flush=True)
    return rec


def run(path_kind: str, rec, data: Path) -> dict:
    report = data / f"{Path(rec.path).stem}_{path_kind}_report.html"
    out = subprocess.run(
        [sys.executable, __file__, "--child", path_kind, rec.path, str(report)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{path_kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _matches(fast: dict, plain: dict) -> str:
    """Do both paths remove the same components and find the same peaks?"""
    import numpy as np

    lines = []
    for rnd in (1, 2):
        a = [np.asarray(r["topo"]) for r in fast["removed"] if r["round"] == rnd]
        b = [np.asarray(r["topo"]) for r in plain["removed"] if r["round"] == rnd]
        best = [max((abs(np.corrcoef(x, y)[0, 1]) for y in b), default=0.0) for x in a]
        lines.append(
            f"ICA round {rnd}: fast removes {len(a)}, plain {len(b)}; topography "
            f"|r| to the closest plain one: "
            + (", ".join(f"{r:.3f}" for r in best) or "-")
        )
    for p, q in zip(fast["peaks"], plain["peaks"], strict=True):
        lines.append(
            f"GMFP {p['component']:>5}: {p['latency_ms']:.0f} vs {q['latency_ms']:.0f}"
            f" ms, {p['amplitude_uv']:.3f} vs {q['amplitude_uv']:.3f} µV"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("/tmp/stimtrain_analysis_bench"),
        help="where the recordings are cached and the reports written",
    )
    parser.add_argument("--plain-minutes", type=float, default=5.0)
    parser.add_argument(
        "--paths",
        nargs="+",
        default=["fast", "plain", "plain-ica"],
        choices=["fast", "plain", "plain-ica"],
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return
    if not 32 <= args.channels <= 64:
        parser.error(f"--channels must be 32-64 (got {args.channels})")
    if args.minutes <= 0 or args.plain_minutes <= 0:
        parser.error("--minutes and --plain-minutes must be > 0")
    args.data.mkdir(parents=True, exist_ok=True)

    print(f"Machine: {describe()}")
    runs = []  # (title, path kind, recording)
    main_rec = recording(args.data, args.minutes, args.channels)
    if "fast" in args.paths:
        runs.append(("fast", main_rec))
    if "plain-ica" in args.paths and (
        "plain" not in args.paths or args.minutes > args.plain_minutes
    ):
        runs.append(("plain-ica", main_rec))
    if "plain" in args.paths:
        plain_min = min(args.minutes, args.plain_minutes)
        small = (
            main_rec
            if plain_min == args.minutes
            else recording(args.data, plain_min, args.channels)
        )
        if small is not main_rec and "fast" in args.paths:
            runs.append(("fast", small))
        runs.append(("plain", small))
    results = []
    steal = steal_ms()
    for kind, rec in runs:
        print(
            f"# {kind}: {rec.minutes:g} min, {rec.n_channels} EEG + 1 EMG channels, "
            f"{rec.n_pulses} pulses, {rec.size_bytes / GB:.2f} GB of XDF "
            f"({rec.data_bytes / GB:.2f} GB of float32 samples)",
            flush=True,
        )
        results.append((kind, rec, run(kind, rec, args.data)))
    heads = [f"{k} {r.minutes:g} min" for k, r, _ in results]
    width = 24
    print(f"\n{'step':<24}" + "".join(f"{h:>{width}}" for h in heads))
    sub = f"{'wall s':>8}{'CPU s':>8}{'peak GB':>8}"
    print(f"{'':<24}" + sub * len(heads))
    for step in STEPS:
        cells = []
        for _, _, res in results:
            row = next((r for r in res["steps"] if r["step"] == step), None)
            cells.append(
                f"{row['seconds']:>8.1f}{row['cpu']:>8.1f}{row['peak'] / GB:>8.2f}"
                if row
                else f"{'-':>8}{'-':>8}{'-':>8}"
            )
        print(f"{LABELS[step]:<24}" + "".join(cells))
    totals, ratios = [], []
    for _, rec, res in results:
        total = sum(r["seconds"] for r in res["steps"])
        cpu = sum(r["cpu"] for r in res["steps"])
        peak = max(r["peak"] for r in res["steps"])
        totals.append(f"{total:>8.1f}{cpu:>8.1f}{peak / GB:>8.2f}")
        ratios.append(f"{peak / rec.data_bytes:>{width - 1}.2f}x")
    print(f"{'total':<24}" + "".join(totals))
    print(f"{'peak / samples (float32)':<24}" + "".join(ratios))
    cells = [
        " / ".join(
            str(sum(r["round"] == rnd for r in res["removed"])) for rnd in (1, 2)
        )
        for _, _, res in results
    ]
    print(f"{'ICA removed (1 / 2)':<24}" + "".join(f"{c:>{width}}" for c in cells))
    for label, key in (
        ("ICA fit samples", "samples"),
        ("ICA iterations", "iterations"),
    ):
        cells = [
            " / ".join(str(res["icas"][r][key]) for r in sorted(res["icas"]))
            for _, _, res in results
        ]
        print(f"{label + ' (1 / 2)':<24}" + "".join(f"{c:>{width}}" for c in cells))
    by = {(k, r.minutes): res for k, r, res in results}
    for (kind, minutes), res in by.items():
        if kind.startswith("plain") and ("fast", minutes) in by:
            print(f"\nFast against {kind} on the {minutes:g} min recording:")
            print(_matches(by[("fast", minutes)], res))
    print(
        f"\n(peak = the process's resident memory at its highest during the step, "
        f"interpreter and earlier steps' data included; steal: {steal_since(steal)})"
    )


if __name__ == "__main__":
    main()
