"""The report's TEP sections: which pulses go in, the TESA steps, TEPs, GMFP, peaks.

Only pulses whose TEP is their own go into the TEPs
(:func:`~stimtrain.analysis.tep.pulse_overlap`): a block whose pulses are
closer together than the TEP's span (theta burst, rTMS trains, paired pulses)
is left out, and the report says which and why, so that the "all" TEP never
averages single pulses with the overlapping responses of a train.
"""

from __future__ import annotations

import html
from contextlib import contextmanager

import matplotlib.pyplot as plt
import mne
import numpy as np
import pandas as pd

from .report_figures import gmfp_figure
from .report_sections import SECTIONS, _drawing, note
from .report_tables import df_html
from .tep import TEP_SPAN, TEP_WINDOWS, pulse_overlap
from .tesa import run_tesa


def _has_positions(info) -> bool:
    return any(
        not np.allclose(ch["loc"][:3], 0) and np.isfinite(ch["loc"][:3]).all()
        for ch in info["chs"]
        if ch["kind"] == mne.io.constants.FIFF.FIFFV_EEG_CH
    )


@contextmanager
def _only_pulses(raw: mne.io.BaseRaw, use: np.ndarray):
    """Hide the pulse annotations not in ``use`` while the TEPs are computed.

    The annotations are swapped and put back, not the raw copied: an hour of
    64-channel EEG is gigabytes.
    """
    original = raw.annotations
    pulse_idx = np.flatnonzero(original.description == "pulse")
    drop = pulse_idx[~np.asarray(use, bool)]
    if len(drop) == 0:
        yield raw
        return
    kept = original.copy()
    kept.delete(drop)
    raw.set_annotations(kept)
    try:
        yield raw
    finally:
        raw.set_annotations(original)


def _block_name(block, labels: dict) -> str:
    label = labels.get(int(block)) if pd.notna(block) else None
    return f"block {int(block)}" + (f" ({label})" if label else "")


def _interval(ms: float) -> str:
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def overlap_blocks(overlap: pd.DataFrame, labels: dict) -> pd.DataFrame:
    """Per block: its pulses, their shortest interval and how many go in the TEP.

    Parameters
    ----------
    overlap : pandas.DataFrame
        From :func:`~stimtrain.analysis.tep.pulse_overlap`.
    labels : dict
        Block index to label.

    Returns
    -------
    blocks : pandas.DataFrame
        ``block``, ``label``, ``pulses``, ``shortest interval (ms)``,
        ``in TEP`` (pulses used).
    """
    rows = []
    for block, group in overlap.groupby("block"):
        rows.append(
            {
                "block": int(block),
                "label": labels.get(int(block), ""),
                "pulses": len(group),
                "shortest interval (ms)": group["block_interval_ms"].iloc[0],
                "in TEP": int(group["use"].sum()),
            }
        )
    table = pd.DataFrame(
        rows, columns=["block", "label", "pulses", "shortest interval (ms)", "in TEP"]
    )
    return table.replace({"shortest interval (ms)": {np.inf: np.nan}})


def left_out_sentences(overlap: pd.DataFrame, labels: dict, span=TEP_SPAN) -> list:
    """Which pulses are left out of the TEPs and why, one sentence each.

    Parameters
    ----------
    overlap : pandas.DataFrame
        From :func:`~stimtrain.analysis.tep.pulse_overlap`.
    labels : dict
        Block index to label.
    span : tuple of float
        The TEP's span (s), as given to ``pulse_overlap``.

    Returns
    -------
    sentences : list of str
        Empty when every pulse goes into the TEPs.
    """
    length_ms = (span[1] - span[0]) * 1e3
    window = f"{span[0] * 1e3:g}..{span[1] * 1e3:g} ms"
    out = []
    whole = overlap[overlap["block_overlaps"]]
    for block, group in whole.groupby("block"):
        out.append(
            f"B{_block_name(block, labels)[1:]} is left out of the TEPs: "
            f"its {len(group)} pulses are as little as "
            f"{_interval(group['block_interval_ms'].iloc[0])} apart, closer "
            f"than a TEP's span ({window}, {length_ms:g} ms), so each pulse's "
            "TEP would hold the artifacts and responses of the pulses around it."
        )
    alone = overlap[~overlap["block_overlaps"] & overlap["overlaps"]]
    for block, group in alone.groupby("block", dropna=False):
        name = _block_name(block, labels) if pd.notna(block) else "no block"
        out.append(
            f"{len(group)} pulse(s) of {name} left out of the TEPs: another "
            f"pulse came within {group['nearest_ms'].min():.0f} ms of each "
            f"(less than the {length_ms:g} ms span)."
        )
    return out


def _tep_title(name: str, labels: dict, n: int) -> str:
    """``TMS-evoked potential: block 2 (spTMS), 12 pulses`` and the like."""
    shown = name
    if name == "all":
        shown = "all pulses used"
    elif name.startswith("block="):
        try:
            shown = _block_name(float(name.removeprefix("block=")), labels)
        except ValueError:
            pass
    return f"{SECTIONS['tep']}: {shown}, {n} pulses"


def _tep_sections(
    report: mne.Report,
    raw: mne.io.BaseRaw,
    tesa_kwargs: dict,
    labels: dict,
    verbose=None,
):
    """Pulses used, TESA pipeline, TEP per condition, GMFP, peaks.

    Returns the :class:`~stimtrain.analysis.tesa.TesaResult` (``None`` when
    no TEP could be made) and the table of :func:`pulse_overlap`.
    """
    overlap = pulse_overlap(raw)
    sentences = left_out_sentences(overlap, labels)
    used = int(overlap["use"].sum())
    intro = (
        f"<p>{used} of {len(overlap)} pulses go into the TEPs: those with "
        "no other pulse's artifact or response within "
        f"{TEP_SPAN[0] * 1e3:g}..{TEP_SPAN[1] * 1e3:g} ms of them.</p>"
    )
    if sentences:
        intro += "".join(f"<p>{html.escape(s)}</p>" for s in sentences)
    blocks = overlap_blocks(overlap, labels)
    if len(blocks):
        intro += df_html(blocks, index=False, float_format="{:.1f}")
    report.add_html(intro, title=f"{SECTIONS['tep']}: pulses used")
    if used < 2:
        note(report, SECTIONS["tep"], f"No TEP: {used} pulse(s) without overlap.")
        return None, overlap
    try:
        with _only_pulses(raw, overlap["use"].to_numpy()):
            result = run_tesa(raw, **tesa_kwargs, verbose=verbose)
    except (ValueError, RuntimeError) as err:
        note(report, SECTIONS["tep"], f"No TEP: {err}")
        return None, overlap
    steps = "".join(f"<li>{html.escape(step)}</li>" for step in result.steps)
    text = f"<ol>{steps}</ol>"
    if len(result.ica):
        text += "<p>ICA components removed:</p>" + df_html(result.ica, index=False)
    report.add_html(text, title=SECTIONS["tesa"])
    windows = tesa_kwargs.get("windows") or TEP_WINDOWS
    if not _drawing(report):
        return result, overlap
    conditions = [name for name in result.evokeds if name != "all"]
    # With one condition, "all" is that condition: shown once.
    shown = conditions if len(conditions) == 1 else ["all", *conditions]
    for name in shown:
        evoked = result.evokeds[name]
        title = _tep_title(name, labels, evoked.nave)
        if _has_positions(evoked.info):
            report.add_evokeds(
                evoked.copy().crop(*TEP_SPAN),
                titles=[title],
                n_time_points=6,
                replace=True,
            )
        else:
            fig = evoked.plot(show=False, spatial_colors=False)
            report.add_figure(fig, title=title)
            plt.close(fig)
    fig = gmfp_figure(result.evokeds["all"], len(result.epochs), windows)
    report.add_figure(fig, title=SECTIONS["gmfp"])
    plt.close(fig)
    gm = result.peaks[result.peaks["signal"] == "GMFP"]
    report.add_html(
        "<p>TESA peak rule: a peak exceeds its neighbours by ±5 samples; the "
        "largest in each window. GMFP peaks below; every channel's and "
        "ROI's in <code>peaks.tsv</code>.</p>"
        + df_html(gm.drop(columns=["signal"]), index=False, float_format="{:.2f}"),
        title=SECTIONS["peaks"],
    )
    return result, overlap
