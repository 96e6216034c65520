"""The report's first section: what was delivered, what was recorded, what needs a look.

Computed from the run's files (markers, plan, timing diagnostics) and the
analysis (artifact alignment, TESA), after every other section, and moved to
the top of the report. Each "needs a look" item names where to look and the
number that made it one.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd

__all__ = ["Summary", "summarise", "summary_html", "TIMING_OUTLIER_MS"]

#: A pulse further than this from its schedule is a timing outlier (issue
#: 5's bound for the worst pulse; the device process's p99 is about 0.1 ms,
#: docs/benchmarks.md).
TIMING_OUTLIER_MS = 1.0


@dataclass
class Summary:
    """The first section's lines.

    Attributes
    ----------
    delivered : list of str
        Pulses by block against the plan, task trials, how the session ended.
    recorded : list of str
        Each stream: channels, rate, duration, gaps.
    look : list of str
        What needs a look (empty when nothing does).
    """

    delivered: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    look: list[str] = field(default_factory=list)


def _name(block, labels: dict) -> str:
    label = labels.get(int(block))
    return f"block {int(block)}" + (f" ({label})" if label else "")


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _delivered(summary: Summary, plan, markers, pulses, labels) -> None:
    planned = {
        int(b["index"]): b
        for b in (plan or {}).get("blocks", [])
        if isinstance(b, dict) and b.get("index") is not None
    }
    by_block = (
        pulses.dropna(subset=["block"]).groupby("block").size()
        if "block" in pulses
        else pd.Series(dtype=int)
    )
    by_block.index = by_block.index.astype(int)
    trains = {}
    for t in (plan or {}).get("trains", []):
        if isinstance(t, dict) and t.get("block") is not None:
            trains[int(t["block"])] = trains.get(int(t["block"]), 0) + 1
    stim_blocks = sorted(
        set(by_block.index) | {i for i, b in planned.items() if b.get("pulses")}
    )
    parts = []
    for block in stim_blocks:
        n = int(by_block.get(block, 0))
        want = planned.get(block, {}).get("pulses")
        text = f"{_name(block, labels)} {n}" + (f" of {want}" if want else "")
        if trains.get(block, 0) > 1:
            text += f" in {trains[block]} trains"
        parts.append(text)
        if want is not None and n != want:
            missing = want - n
            summary.look.append(
                f"B{_name(block, labels)[1:]}: {n} of {want} planned pulses "
                "delivered"
                + (f" ({missing} missing)." if missing > 0 else f" ({-missing} extra).")
            )
    total_planned = (plan or {}).get("total_pulses")
    head = f"{len(pulses)} pulses" + (
        f" of {total_planned} planned" if total_planned is not None else ""
    )
    summary.delivered.append(
        f"{head}" + (": " + "; ".join(parts) if parts else "") + "."
    )
    trials = (
        markers[markers["event"] == "stim_onset"]
        if "event" in markers
        else markers.iloc[:0]
    )
    task_blocks = sorted(
        set(trials["block"].dropna().astype(int) if "block" in trials else [])
        | {i for i, b in planned.items() if b.get("trials")}
    )
    parts = []
    for block in task_blocks:
        n = int((trials["block"] == block).sum()) if "block" in trials else 0
        want = planned.get(block, {}).get("trials")
        parts.append(f"{_name(block, labels)} {n}" + (f" of {want}" if want else ""))
        if want and n < want:
            summary.look.append(
                f"B{_name(block, labels)[1:]}: {n} of {want} planned task trials shown."
            )
    if parts:
        summary.delivered.append("Task trials: " + "; ".join(parts) + ".")
    _ending(summary, markers)


def _ending(summary: Summary, markers: pd.DataFrame) -> None:
    if "event" not in markers or markers.empty:
        summary.look.append("No stimtrain markers: nothing says what was delivered.")
        return
    aborts = markers[markers["event"] == "abort"]
    end = markers[markers["event"] == "session_end"]
    status = (
        str(end["status"].iloc[-1]) if len(end) and "status" in end else "no end marker"
    )
    if len(aborts):
        reason = aborts["reason"].iloc[0] if "reason" in aborts else "no reason given"
        summary.delivered.append(f"Session stopped early: {reason}.")
        summary.look.append(f"The session was stopped early: {reason}.")
    elif status in ("completed", "nan"):
        summary.delivered.append("Session completed.")
    else:
        summary.delivered.append(f"Session ended: {status}.")
        if status == "no end marker":
            summary.look.append(
                "No session_end marker: the recording stopped before the session."
            )
    stalls = markers[markers["event"] == "stream_stalled"]
    if len(stalls):
        names = sorted(set(stalls["stream"].astype(str))) if "stream" in stalls else []
        summary.look.append(
            f"{_count(len(stalls), 'stream stall')} during the session "
            f"({', '.join(names)}): stimulation was paused."
        )


def _recorded(summary: Summary, diagnostics: dict, markers: pd.DataFrame) -> None:
    for key, d in diagnostics.items():
        if str(d.get("type", "")).lower() == "markers":
            n = d.get("n_samples", 0)
            summary.recorded.append(f"{key} (markers): {_count(n, 'marker')}.")
            continue
        # Breaks between segments and dropouts inside them: both are holes.
        gaps = [float(g) for g in d.get("gaps_s") or []] + [
            float(x["duration_s"]) for x in d.get("dropouts") or []
        ]
        dropped = int(d.get("dropped_samples") or 0)
        text = (
            f"{key} ({d.get('type')}): {d.get('channel_count')} channels at "
            f"{float(d.get('nominal_srate') or 0):g} Hz (effective "
            f"{float(d.get('effective_srate') or 0):.3f} Hz), "
            f"{float(d.get('duration_s') or 0):.1f} s"
        )
        if gaps or dropped:
            text += (
                f", {_count(len(gaps), 'gap')} ({sum(gaps):.3f} s), "
                f"{_count(dropped, 'sample')} dropped"
            )
            summary.look.append(
                f"{key}: {_count(len(gaps), 'gap')} in the recording ("
                + ", ".join(f"{g:.3f} s" for g in gaps[:5])
                + (", …" if len(gaps) > 5 else "")
                + f"; {_count(dropped, 'sample')} dropped): epochs over a gap "
                "are dropped (BAD_ACQ_SKIP)."
            )
        else:
            text += ", no gaps"
        summary.recorded.append(text + ".")
        if d.get("has_footer") is False:
            summary.look.append(
                f"{key}: the file has no footer (the recorder did not close it)."
            )


def _pulse_checks(summary: Summary, pulses: pd.DataFrame, labels: dict) -> None:
    if "error_ms" in pulses:
        err = pd.to_numeric(pulses["error_ms"], errors="coerce")
        far = pulses[err.abs() > TIMING_OUTLIER_MS]
        if len(far):
            worst = far.loc[err[far.index].abs().idxmax()]
            where = (
                f"{_name(worst['block'], labels)}, pulse {int(worst['pulse'])}"
                if pd.notna(worst.get("block")) and pd.notna(worst.get("pulse"))
                else "a pulse"
            )
            summary.look.append(
                f"{_count(len(far), 'pulse')} more than {TIMING_OUTLIER_MS:g} ms "
                f"from schedule (largest {worst['error_ms']:+.2f} ms: {where})."
            )
    if "artifact_sample" in pulses:
        missing = int((pulses["artifact_sample"] < 0).sum())
        if missing:
            summary.look.append(
                f"No TMS artifact found in the EEG within ±5 ms of "
                f"{_count(missing, 'pulse')} marker(s)."
            )
        off = pd.to_numeric(pulses["artifact_offset_samples"], errors="coerce")
        late = int((off.abs() > 1).sum())
        if late:
            summary.look.append(
                f"{_count(late, 'pulse')} whose artifact is more than 1 sample "
                f"from its marker (up to {int(off.abs().max())} samples)."
            )


def _tep_checks(summary: Summary, result, overlap, n_eeg: int, tesa: dict) -> None:
    if overlap is not None and len(overlap):
        used = int(overlap["use"].sum())
        left = overlap[~overlap["use"]]
        text = f"TEPs from {used} of {_count(len(overlap), 'pulse')}"
        if len(left):
            blocks = sorted(left["block"].dropna().astype(int).unique())
            text += (
                " (left out, pulses overlapping: block "
                + ", ".join(str(b) for b in blocks)
                + ")"
            )
        summary.delivered.append(text + ".")
    if result is None:
        return
    if result.bad_channels:
        summary.look.append(
            f"{_count(len(result.bad_channels), 'bad EEG channel')} interpolated: "
            f"{', '.join(result.bad_channels)}."
        )
    n_epochs = len(result.epochs) + len(result.bad_trials)
    if result.bad_trials:
        summary.look.append(
            f"{len(result.bad_trials)} of {n_epochs} TEP trials dropped as bad "
            "(outlying amplitude)."
        )
    n_comp = tesa.get("ica_n_components")
    fitted = (
        int(n_comp)
        if isinstance(n_comp, int)
        else max(n_eeg - len(result.bad_channels), 1)
    )
    ica = result.ica
    for rnd, group in ica.groupby("round") if len(ica) else []:
        if len(group) > fitted / 2:
            summary.look.append(
                f"ICA round {int(rnd)} removed {len(group)} of about {fitted} "
                "components: check its rules against this recording."
            )


def summarise(
    *,
    plan: dict | None,
    markers: pd.DataFrame,
    pulses: pd.DataFrame,
    diagnostics: dict,
    labels: dict,
    tep_result=None,
    overlap: pd.DataFrame | None = None,
    n_eeg: int = 0,
    tesa: dict | None = None,
) -> Summary:
    """Say what was delivered, what was recorded and what needs a look.

    Parameters
    ----------
    plan : dict | None
        The run's ``plan.json``.
    markers : pandas.DataFrame
        The run's markers.
    pulses : pandas.DataFrame
        From :func:`~stimtrain.analysis.report_tables.pulse_table`, with the
        artifact columns when the EEG was searched.
    diagnostics : dict
        From :func:`~stimtrain.analysis.xdf.timing_diagnostics`.
    labels : dict
        Block index to label.
    tep_result : TesaResult | None
        The TESA pipeline's result.
    overlap : pandas.DataFrame | None
        From :func:`~stimtrain.analysis.tep.pulse_overlap`.
    n_eeg : int
        EEG channels (the ICA's rank when ``ica_n_components`` is not set).
    tesa : dict | None
        The keyword arguments given to the TESA pipeline.

    Returns
    -------
    summary : Summary
    """
    summary = Summary()
    _delivered(summary, plan, markers, pulses, labels)
    _recorded(summary, diagnostics, markers)
    _pulse_checks(summary, pulses, labels)
    _tep_checks(summary, tep_result, overlap, n_eeg, tesa or {})
    return summary


def summary_html(summary: Summary) -> str:
    """The first section as HTML: three short paragraphs.

    Parameters
    ----------
    summary : Summary
        From :func:`summarise`.

    Returns
    -------
    html : str
    """

    def para(head: str, lines: list[str]) -> str:
        body = " ".join(html.escape(line) for line in lines)
        return f"<p><strong>{head}.</strong> {body}</p>"

    out = [para("Delivered", summary.delivered), para("Recorded", summary.recorded)]
    if summary.look:
        items = "".join(f"<li>{html.escape(item)}</li>" for item in summary.look)
        out.append(
            f'<p class="text-danger"><strong>Needs a look '
            f"({len(summary.look)}).</strong></p><ul>{items}</ul>"
        )
    else:
        out.append(
            "<p><strong>Needs a look.</strong> Nothing found: the pulses and "
            "trials match the plan, the recording has no gaps, every pulse "
            "was on time and found in the EEG, and the TESA pipeline flagged "
            "no channel, trial or unusual number of components.</p>"
        )
    return '<div class="stimtrain-summary">' + "".join(out) + "</div>"


def block_labels(plan: dict | None, markers: pd.DataFrame) -> dict[int, str]:
    """Block index to label, from the plan, else the block_start markers.

    Parameters
    ----------
    plan : dict | None
        The run's ``plan.json``.
    markers : pandas.DataFrame
        The run's markers.

    Returns
    -------
    labels : dict of int to str
    """
    labels: dict[int, str] = {}
    if "event" in markers and "block" in markers and "label" in markers:
        starts = markers[markers["event"] == "block_start"].dropna(subset=["block"])
        for block, label in zip(starts["block"], starts["label"], strict=True):
            if isinstance(label, str) and label:
                labels[int(block)] = label
    for b in (plan or {}).get("blocks", []):
        if isinstance(b, dict) and b.get("index") is not None and b.get("label"):
            labels[int(b["index"])] = str(b["label"])
    return labels
