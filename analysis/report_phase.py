"""The report's section on phase-locked (triggered) pulses.

A triggered block's pulse markers carry the phase the block aimed at
(``target_phase``) and what the online estimator saw when it decided
(``online_phase``), both in degrees. What the recording alone says of the
phase the pulses met is estimated here offline (non-causally, with
:func:`~stimtrain.analysis.phase.phase_at_pulses`) with each block's own
montage and band, and shown per block and target as a polar histogram
beside the online estimate, with circular mean and SD. The montage and band
are read from the session plan (``plan.json``), whose triggered blocks
carry them as ``band_hz`` and ``montage`` (a preset's name or channel
weights); plans written before those fields existed only describe the
trigger in one line (``peak (0 deg) of 8-13 Hz at c3_hjorth, ...``), which
is read instead. A block the plan does not describe is read with C3 Hjorth
at 8-13 Hz, and the section says so. Runs without those fields get no
section at all: phase is not something every session has.
"""

from __future__ import annotations

import html
import re
from typing import NamedTuple

import matplotlib.pyplot as plt
import mne
import numpy as np
import pandas as pd

from ..circular import circular_mean_deg, circular_sd_deg, wrap_deg
from ..rhythm import DEFAULT_BAND, DEFAULT_MONTAGE, MONTAGES
from .phase import phase_at_pulses
from .report_tables import df_html

TITLE = "Phase at the pulses"
#: Bins of the polar histograms (20 degrees each).
_BINS = 18
_NUMBER = r"[0-9]+(?:\.[0-9]*)?(?:e[+-]?[0-9]+)?"
#: A triggered block's trigger as the plan describes it (the protocol
#: language's ``PhaseTrigger.describe``): ``<target> of <low>-<high> Hz at
#: <preset or "CH +w, CH w">, <estimator> over <window> ms, ...``. Read only
#: from plans written before the plan carried ``band_hz`` and ``montage``.
_DESCRIBED = re.compile(
    rf" of (?P<low>{_NUMBER})-(?P<high>{_NUMBER}) Hz at (?P<where>.+?), "
    rf"[A-Za-z_0-9]+ over {_NUMBER} ms"
)
_WEIGHT = re.compile(rf"(?P<ch>[^\s,]+) (?P<w>[+-]{_NUMBER})")


class BlockRhythm(NamedTuple):
    """The rhythm a triggered block aimed at: montage and band."""

    #: A preset name of :data:`stimtrain.rhythm.MONTAGES` or channel weights.
    montage: str | dict[str, float]
    #: The band, Hz.
    band: tuple[float, float]
    #: Whether the session's files say so (else the default is assumed).
    recorded: bool

    @property
    def montage_text(self) -> str:
        """The montage for people: its preset name or ``C4 +1, FC2 -0.25``."""
        if isinstance(self.montage, str):
            return self.montage
        return ", ".join(f"{ch} {w:+g}" for ch, w in self.montage.items())

    @property
    def band_text(self) -> str:
        """The band for people: ``8–13 Hz``."""
        return f"{self.band[0]:g}–{self.band[1]:g} Hz"


#: What a block the session's files do not describe is read with.
DEFAULT_RHYTHM = BlockRhythm(DEFAULT_MONTAGE, DEFAULT_BAND, recorded=False)


def planned_rhythm(block: dict) -> BlockRhythm | None:
    """The montage and band a planned block carries (``band_hz``, ``montage``).

    Parameters
    ----------
    block : dict
        One of ``plan.json``'s blocks: ``band_hz`` is ``[low, high]`` (JSON
        has no tuples), ``montage`` a preset's name or channel weights.

    Returns
    -------
    BlockRhythm | None
        ``None`` when the block does not carry both in that form.
    """
    band, montage = block.get("band_hz"), block.get("montage")
    if not (
        isinstance(band, (list, tuple))
        and len(band) == 2
        and all(_is_number(x) for x in band)
    ):
        return None
    if isinstance(montage, dict):
        if not montage or not all(
            isinstance(ch, str) and _is_number(w) for ch, w in montage.items()
        ):
            return None
        montage = {ch: float(w) for ch, w in montage.items()}
    elif not isinstance(montage, str) or not montage:
        return None
    # A preset name this version does not know is passed on as written: the
    # estimate then names it in the block's problem rather than assuming C3.
    return BlockRhythm(montage, (float(band[0]), float(band[1])), recorded=True)


def _is_number(x) -> bool:
    # JSON's true and false read as ints, and are no band edge or weight.
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def described_rhythm(description: str | None) -> BlockRhythm | None:
    """The montage and band of a trigger as an older plan describes it.

    Plans written before the planned blocks carried ``band_hz`` and
    ``montage`` say them only in this sentence; recordings of that time are
    still analysed with it (:func:`block_rhythms`).

    Parameters
    ----------
    description : str | None
        A planned block's ``trigger``, e.g. ``"peak (0 deg) of 8-13 Hz at
        c3_hjorth, ar over 500 ms, gate 50th percentile of 60 s, at least 2 s
        apart"`` or ``"... at C4 +1, FC2 -0.25, FC6 -0.25, ar over ..."``.

    Returns
    -------
    BlockRhythm | None
        ``None`` when the text does not say them in that form.
    """
    m = _DESCRIBED.search(description) if isinstance(description, str) else None
    if m is None:
        return None
    band = (float(m["low"]), float(m["high"]))
    where = m["where"]
    if where in MONTAGES:
        return BlockRhythm(where, band, recorded=True)
    weights: dict[str, float] = {}
    for item in where.split(", "):
        w = _WEIGHT.fullmatch(item)
        if w is None or w["ch"] in weights:
            return None
        weights[w["ch"]] = float(w["w"])
    return BlockRhythm(weights, band, recorded=True)


def block_rhythms(plan: dict | None) -> dict[int, BlockRhythm]:
    """Each triggered block's montage and band, from the session plan.

    A block's ``band_hz`` and ``montage`` give them; in a plan written before
    blocks had those fields, the ``trigger`` sentence does
    (:func:`described_rhythm`).

    Parameters
    ----------
    plan : dict | None
        The run's ``plan.json``.

    Returns
    -------
    dict of int to BlockRhythm
        By block index; blocks that give neither are left out.
    """
    out: dict[int, BlockRhythm] = {}
    for b in (plan or {}).get("blocks", []):
        if not isinstance(b, dict) or not isinstance(b.get("index"), int):
            continue
        if "band_hz" in b or "montage" in b:
            rhythm = planned_rhythm(b)
        else:
            # A plan written before blocks carried band_hz and montage (a
            # recording already on disk): its trigger's sentence is all it has.
            rhythm = described_rhythm(b.get("trigger"))
        if rhythm is not None:
            out[b["index"]] = rhythm
    return out


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


def _block_keys(pulses: pd.DataFrame) -> np.ndarray:
    """Each pulse's block index (-1 when the markers do not say)."""
    if "block" not in pulses:
        return np.full(len(pulses), -1)
    block = pd.to_numeric(pulses["block"], errors="coerce")
    return block.fillna(-1).astype(int).to_numpy()


def phase_table(
    raw: mne.io.BaseRaw, pulses: pd.DataFrame, plan: dict | None = None
) -> pd.DataFrame | None:
    """Add ``offline_phase`` to the triggered pulses; summarise per block and target.

    Each block's pulses are read with the montage and band the plan gives
    for it (:func:`block_rhythms`), with C3 Hjorth at 8-13 Hz where it gives
    none.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        The recording (its ``pulse`` annotations in the order of ``pulses``).
    pulses : pandas.DataFrame
        The pulse table; ``offline_phase`` (degrees) is added in place for
        the rows with a ``target_phase``.
    plan : dict | None
        The run's ``plan.json``.

    Returns
    -------
    pandas.DataFrame | None
        One row per block and target: ``block``, ``montage``, ``band``,
        ``target_phase``, ``pulses``, the offline and online circular mean
        and SD (degrees) and the offline mean's error from the target;
        ``None`` when no pulse carries a target phase (or the recording's
        pulses do not match the markers). ``attrs["problems"]`` holds, by
        block, why a block has no offline phase (the recording lacks its
        montage's channels, its band does not fit the sampling rate).

    Raises
    ------
    ValueError
        When no triggered block's phase can be estimated (every block has a
        problem), with their problems.
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
    triggered = target.notna().to_numpy()
    blocks = _block_keys(pulses)
    rhythms = block_rhythms(plan)
    offline = np.full(len(pulses), np.nan)
    problems: dict[int, str] = {}
    used: dict[int, BlockRhythm] = {}
    for block in sorted(set(blocks[triggered])):
        rows = triggered & (blocks == block)
        rhythm = used[block] = rhythms.get(block, DEFAULT_RHYTHM)
        try:
            offline[rows] = phase_at_pulses(
                raw, times[rows], rhythm.montage, rhythm.band
            )
        except ValueError as err:
            problems[block] = str(err)
    if len(problems) == len(used):
        raise ValueError("; ".join(dict.fromkeys(problems.values())))
    pulses["offline_phase"] = offline
    online = (
        wrap_deg(pd.to_numeric(pulses["online_phase"], errors="coerce"))
        if "online_phase" in pulses
        else np.full(len(pulses), np.nan)
    )
    out = []
    for block, rhythm in used.items():
        for value in sorted(target[triggered & (blocks == block)].unique()):
            sel = ((target == value).to_numpy()) & (blocks == block)
            mean = circular_mean_deg(offline[sel])
            out.append(
                {
                    "block": block if block >= 0 else None,
                    "montage": rhythm.montage_text,
                    "band": rhythm.band_text,
                    "target_phase": float(value),
                    "pulses": int(sel.sum()),
                    "offline_mean": mean,
                    "offline_sd": circular_sd_deg(offline[sel]),
                    "offline_error": float(wrap_deg(mean - value)),
                    "online_mean": circular_mean_deg(online[sel]),
                    "online_sd": circular_sd_deg(online[sel]),
                }
            )
    table = pd.DataFrame(out)
    table["block"] = table["block"].astype("Int64")
    table.attrs["problems"] = problems
    table.attrs["assumed"] = sorted(b for b, r in used.items() if not r.recorded)
    return table


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
    # At most four panels a row (two blocks of peak and trough).
    ncols = min(n, 4)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(3.6 * ncols, 3.9 * nrows),
        subplot_kw=dict(projection="polar"),
        layout="constrained",
        squeeze=False,
    )
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    edges = np.linspace(-np.pi, np.pi, _BINS + 1)
    width = edges[1] - edges[0]
    target = pd.to_numeric(pulses["target_phase"], errors="coerce").to_numpy()
    blocks = _block_keys(pulses)
    several = table["block"].nunique(dropna=False) > 1
    online_all = (
        wrap_deg(pd.to_numeric(pulses["online_phase"], errors="coerce"))
        if "online_phase" in pulses
        else None
    )
    for ax, row in zip(axes.ravel()[:n], table.itertuples(index=False), strict=True):
        block = -1 if pd.isna(row.block) else int(row.block)
        sel = (target == row.target_phase) & (blocks == block)
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
            (f"block {block}, " if several else "")
            + f"target {row.target_phase:g}° (n={row.pulses})\n"
            f"offline {row.offline_mean:.0f}° ± {row.offline_sd:.0f}°"
            + (
                f", online at decision {row.online_mean:.0f}° ± {row.online_sd:.0f}°"
                if np.isfinite(row.online_mean)
                else ""
            ),
            fontsize=9,
        )
    return fig


def phase_section(
    report: mne.Report,
    raw: mne.io.BaseRaw,
    pulses: pd.DataFrame,
    drawing: bool,
    plan: dict | None = None,
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
    plan : dict | None
        The run's ``plan.json`` (each triggered block's montage and band).

    Returns
    -------
    pandas.DataFrame | None
        The per-block, per-target table, ``None`` when the run has no
        triggered pulses.
    """
    try:
        table = phase_table(raw, pulses, plan)
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
    used = table.drop_duplicates("block")
    where = "; ".join(
        (f"block {r.block}: " if pd.notna(r.block) else "")
        + f"{html.escape(r.montage)}, {r.band}"
        for r in used.itertuples(index=False)
    )
    notes = "".join(
        f"<p><em>Block {b}: no offline phase: {html.escape(msg)}.</em></p>"
        for b, msg in table.attrs["problems"].items()
    )
    if table.attrs["assumed"]:
        notes += (
            "<p><em>The session plan does not give the montage and band of "
            + ", ".join(
                "the pulses' block" if b < 0 else f"block {b}"
                for b in table.attrs["assumed"]
            )
            + f": read with {DEFAULT_RHYTHM.montage_text} at "
            f"{DEFAULT_RHYTHM.band_text}.</em></p>"
        )
    text = (
        "<p>Phase of each triggered block's rhythm at its pulses (0°: peak, "
        "180°: trough), with the montage and band the block's trigger used "
        f"({where}), estimated offline from the recording: the pulse "
        "artifact bridged from 5 ms before to 20 ms after each pulse, a "
        "zero-phase band-pass over ±1 s and the Hilbert transform. Online: "
        "what the estimator saw when it decided the pulse (pulse marker's "
        "<code>online_phase</code>). The decision comes 5-17 ms before its "
        "pulse by default (the device's lead and one chunk of EEG), so the "
        "online phase sits some 20-60° before the target at 10 Hz: its "
        "spread, not its mean, compares with the offline phase's. Circular "
        "mean and SD (√(−2 ln R)), "
        "degrees.</p>" + notes + df_html(table, index=False, float_format="{:.1f}")
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
