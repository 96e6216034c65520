"""The report's section on phase-locked (triggered) pulses.

A triggered block's pulse markers carry the phase the block aimed at
(``target_phase``) and what the online estimator saw when it decided
(``online_phase``), both in degrees. What the recording alone says of the
phase the pulses met is estimated here offline (non-causally, with
:func:`~stimtrain.analysis.phase.phase_at_pulses`), and shown per target as
a polar histogram beside the online estimate, with circular mean and SD.
Runs without those fields get no section at all: phase is not something
every session has.
"""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import mne
import numpy as np
import pandas as pd

from ..circular import circular_mean_deg, circular_sd_deg, wrap_deg
from .phase import phase_at_pulses
from .report_tables import df_html

TITLE = "Phase at the pulses"
#: Bins of the polar histograms (20 degrees each).
_BINS = 18


def pulse_samples(raw: mne.io.BaseRaw) -> np.ndarray:
    """The raw's ``pulse`` annotations as times on its time axis, in order.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        The recording with one ``pulse`` annotation per pulse marker.

    Returns
    -------
    ndarray
        Times (s) from the raw's first sample.
    """
    onsets = np.sort(raw.annotations.onset[raw.annotations.description == "pulse"])
    # Annotation onsets count from the measurement date when there is one,
    # from the first sample otherwise; raw.times counts from the first sample.
    if raw.annotations.orig_time is not None:
        onsets = onsets - raw.first_time
    return onsets


def phase_table(raw: mne.io.BaseRaw, pulses: pd.DataFrame) -> pd.DataFrame | None:
    """Add ``offline_phase`` to the triggered pulses; summarise per target.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        The recording (its ``pulse`` annotations in the order of ``pulses``).
    pulses : pandas.DataFrame
        The pulse table; ``offline_phase`` (degrees) is added in place for
        the rows with a ``target_phase``.

    Returns
    -------
    pandas.DataFrame | None
        One row per target: ``target_phase``, ``pulses``, the offline and
        online circular mean and SD (degrees) and the offline mean's
        error from the target; ``None`` when no pulse carries a target
        phase (or the recording's pulses do not match the markers).
    """
    if "target_phase" not in pulses:
        return None
    target = pd.to_numeric(pulses["target_phase"], errors="coerce")
    if not target.notna().any():
        return None
    times = pulse_samples(raw)
    if len(times) != len(pulses):
        # Both come from the same pulse markers; a mismatch means the EEG
        # does not cover every pulse, and a pairing by position would lie.
        return None
    rows = target.notna().to_numpy()
    offline = np.full(len(pulses), np.nan)
    offline[rows] = phase_at_pulses(raw, times[rows])
    pulses["offline_phase"] = offline
    online = (
        wrap_deg(pd.to_numeric(pulses["online_phase"], errors="coerce"))
        if "online_phase" in pulses
        else np.full(len(pulses), np.nan)
    )
    out = []
    for value in sorted(target.dropna().unique()):
        sel = (target == value).to_numpy()
        mean = circular_mean_deg(offline[sel])
        out.append(
            {
                "target_phase": float(value),
                "pulses": int(sel.sum()),
                "offline_mean": mean,
                "offline_sd": circular_sd_deg(offline[sel]),
                "offline_error": float(wrap_deg(mean - value)),
                "online_mean": circular_mean_deg(online[sel]),
                "online_sd": circular_sd_deg(online[sel]),
            }
        )
    return pd.DataFrame(out)


def phase_figure(pulses: pd.DataFrame, table: pd.DataFrame):
    """Polar histograms per target: offline (filled) and online (outline).

    Parameters
    ----------
    pulses : pandas.DataFrame
        Pulse table with ``target_phase``, ``offline_phase`` and (if
        recorded) ``online_phase``.
    table : pandas.DataFrame
        As from :func:`phase_table`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    n = len(table)
    fig, axes = plt.subplots(
        1,
        n,
        figsize=(3.6 * n, 3.9),
        subplot_kw=dict(projection="polar"),
        layout="constrained",
        squeeze=False,
    )
    edges = np.linspace(-np.pi, np.pi, _BINS + 1)
    width = edges[1] - edges[0]
    target = pd.to_numeric(pulses["target_phase"], errors="coerce")
    online_all = (
        wrap_deg(pd.to_numeric(pulses["online_phase"], errors="coerce"))
        if "online_phase" in pulses
        else None
    )
    for ax, row in zip(axes[0], table.itertuples(index=False), strict=True):
        sel = (target == row.target_phase).to_numpy()
        offline = np.radians(pulses["offline_phase"].to_numpy()[sel])
        counts, _ = np.histogram(offline[np.isfinite(offline)], edges)
        ax.bar(edges[:-1], counts, width=width, align="edge", color="C0", alpha=0.6)
        top = max(counts.max(initial=0), 1)
        if online_all is not None:
            online = np.radians(online_all[sel])
            counts_on, _ = np.histogram(online[np.isfinite(online)], edges)
            ax.step(
                np.append(edges[:-1], edges[-1]),
                np.append(counts_on, counts_on[:1]),
                where="post",
                color="C1",
                lw=1.5,
            )
            top = max(top, counts_on.max(initial=0))
        ax.plot([np.radians(row.target_phase)] * 2, [0, top], "k--", lw=1)
        if np.isfinite(row.offline_mean):
            ax.annotate(
                "",
                xy=(np.radians(row.offline_mean), top * 0.9),
                xytext=(0, 0),
                arrowprops=dict(arrowstyle="->", color="C0", lw=2),
            )
        # 0 (peak) at the top, degrees growing clockwise as the rhythm turns.
        ax.set_theta_zero_location("N")
        ax.set_theta_direction(-1)
        ax.set_yticklabels([])
        ax.set_title(
            f"target {row.target_phase:g}° (n={row.pulses})\n"
            f"offline {row.offline_mean:.0f}° ± {row.offline_sd:.0f}°"
            + (
                f", online {row.online_mean:.0f}° ± {row.online_sd:.0f}°"
                if np.isfinite(row.online_mean)
                else ""
            ),
            fontsize=9,
        )
    return fig


def phase_section(
    report: mne.Report, raw: mne.io.BaseRaw, pulses: pd.DataFrame, drawing: bool
) -> pd.DataFrame | None:
    """Add the phase section when the run has triggered pulses.

    Parameters
    ----------
    report : mne.Report
        The report (or the stand-in used when only tables are wanted).
    raw : mne.io.BaseRaw
        The recording.
    pulses : pandas.DataFrame
        The pulse table (``offline_phase`` is added to it).
    drawing : bool
        Whether figures are drawn.

    Returns
    -------
    pandas.DataFrame | None
        The per-target table, ``None`` when the run has no triggered pulses.
    """
    try:
        table = phase_table(raw, pulses)
    except ValueError as err:
        # No montage channels (an EEG without C3 and its neighbours): the
        # rest of the report still stands.
        report.add_html(
            f"<p><em>No offline phase: {html.escape(str(err))}.</em></p>", title=TITLE
        )
        return None
    if table is None:
        if "target_phase" in pulses and pulses["target_phase"].notna().any():
            report.add_html(
                "<p><em>The EEG's pulses do not match the pulse markers: no "
                "offline phase.</em></p>",
                title=TITLE,
            )
        return None
    text = (
        "<p>Phase of the C3 Hjorth montage's 8–13 Hz rhythm at each pulse of "
        "the triggered blocks (0°: peak, 180°: trough), estimated offline from "
        "the recording: the pulse artifact bridged from 5 ms before to 20 ms "
        "after each pulse, a zero-phase band-pass over ±1 s and the Hilbert "
        "transform. Online: what the estimator saw when it decided the pulse "
        "(pulse marker's <code>online_phase</code>). Circular mean and SD "
        "(√(−2 ln R)), degrees.</p>"
        + df_html(table, index=False, float_format="{:.1f}")
    )
    report.add_html(text, title=TITLE, section=TITLE)
    if drawing:
        fig = phase_figure(pulses, table)
        report.add_figure(
            fig,
            title=f"{TITLE}: offline (filled) and online (outline)",
            caption=html.escape("dashed: target; arrow: offline circular mean"),
            section=TITLE,
        )
        plt.close(fig)
    return table
