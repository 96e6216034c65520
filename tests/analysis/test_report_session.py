"""The report a lab reads, on a synthetic session with known faults, in a real browser.

The session (written with the tests' XDF writer, 32-channel EEG at 1000 Hz)
has single pulses, an iTBS block (pulses 20 ms apart), a flanker block, and
known faults: one planned pulse missing, one pulse 3 ms late, a 0.25 s
dropout in the EEG. The report must say so first, leave the iTBS pulses out
of the TEP with the reason, draw the session as a timeline, and lay out in
chromium without running off the page. Screenshots of it go to docs/images/.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import mne
import numpy as np
import pytest
from synthetic_xdf import XdfWriter

from stimtrain.analysis.report import session_analysis
from stimtrain.analysis.report_figures import timeline_figure
from stimtrain.analysis.tep import pulse_overlap
from stimtrain.analysis.xdf import read_markers
from stimtrain.devices.sim_eeg import CHANNEL_NAMES_32
from stimtrain.vocabulary import encode_marker

#: Fewer ICA components, fitted on every 2nd sample: seconds instead of a minute.
FAST = dict(ica_n_components=10, ica_decim=2)
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
SFREQ = 1000.0
T0 = 1000.0  # recorder clock at the session_start marker
#: Single pulses: 12 planned, the 8th (index 7) never delivered, the 5th
#: (index 4) delivered 3 ms after its schedule.
SINGLE = [6.5 + 1.9 * k + 0.2 * ((k * 7) % 3 - 1) for k in range(12)]
MISSING, LATE = 7, 4
#: iTBS: 2 trains of 10 bursts of 3 pulses at 50 Hz, bursts every 200 ms.
TRAINS = [32.5, 40.5]
ITBS = [t + 0.2 * b + 0.02 * p for t in TRAINS for b in range(10) for p in range(3)]
TRIALS = [47.0 + k for k in range(12)]
WRONG = 5
GAP = (52.0, 52.25)  # s from session start: samples never written
BLOCKS = [
    # index, type, label, start, duration, extra plan fields
    (0, "instructions", "welcome", 0.0, 2.0, {}),
    (1, "rest", "baseline", 2.0, 3.0, {}),
    (2, "stimulate", "spTMS", 5.0, 25.0, dict(pulses=12, pattern="single")),
    (3, "stimulate", "iTBS", 31.0, 14.0, dict(pulses=60, pattern="theta_burst")),
    (4, "task", "flanker", 46.0, 14.0, dict(task="flanker", trials=12)),
    (5, "rest", "end", 60.0, 2.0, {}),
]
#: Template TEP: (latency s, amplitude µV, width s, centre channel).
TEP = ((0.015, -6.0, 0.004, "C3"), (0.045, -8.0, 0.006, "P3"), (0.1, -12.0, 0.01, "Cz"))


def _markers() -> list[tuple[float, str]]:
    out = [
        (
            T0,
            encode_marker(
                "session_start",
                participant="01",
                session="1",
                run=1,
                protocol="report test",
                protocol_sha256="0" * 64,
            ),
        )
    ]
    for index, kind, label, start, dur, _ in BLOCKS:
        out.append(
            (
                T0 + start,
                encode_marker("block_start", block=index, type=kind, label=label),
            )
        )
        out.append(
            (
                T0 + start + dur - 0.01,
                encode_marker("block_end", block=index, type=kind, label=label),
            )
        )
    fields = dict(pattern="single", intensity=120, unit="%RMT", power=60)
    for k, t in enumerate(SINGLE):
        if k == MISSING:
            continue
        late = 0.003 if k == LATE else 0.0001
        out.append(
            (
                T0 + t,
                encode_marker(
                    "pulse", block=2, pulse=k, scheduled=T0 + t - late, **fields
                ),
            )
        )
    fields = dict(pattern="theta_burst", intensity=70, unit="%RMT", power=35)
    for k, t in enumerate(ITBS):
        out.append(
            (
                T0 + t,
                encode_marker(
                    "pulse", block=3, pulse=k, scheduled=T0 + t - 0.0001, **fields
                ),
            )
        )
    for k, t in enumerate(TRIALS):
        base = dict(block=4, task="flanker", trial=k)
        cond = "congruent" if k % 2 == 0 else "incongruent"
        out.append((T0 + t, encode_marker("stim_onset", **base, condition=cond)))
        out.append(
            (
                T0 + t + 0.45,
                encode_marker(
                    "response", **base, key="left", rt=0.45, correct=k != WRONG
                ),
            )
        )
    out.append(
        (
            T0 + 62.2,
            encode_marker("session_end", status="completed", pulses_delivered=71),
        )
    )
    return sorted(out)


def _eeg(n: int, pulse_samples: np.ndarray, seed: int = 3) -> np.ndarray:
    """Pink, spatially smooth background (µV) with pulse artifacts and a TEP."""
    rng = np.random.default_rng(seed)
    montage = mne.channels.make_standard_montage(
        "colin27_1020"
        if "colin27_1020" in mne.channels.get_builtin_montages()
        else "standard_1020"
    )
    ch_pos = montage.get_positions()["ch_pos"]
    pos = np.array([ch_pos[ch] for ch in CHANNEL_NAMES_32])
    spec = np.fft.rfft(rng.standard_normal((len(pos), n)), axis=1)
    spec /= np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / SFREQ), 1.0))
    bg = np.fft.irfft(spec, n, axis=1)
    mix = np.exp(-np.sum((pos[:, None] - pos[None]) ** 2, -1) / (2 * 0.05**2))
    data = (
        3.0
        * (mix / np.linalg.norm(mix, axis=1, keepdims=True))
        @ (bg / bg.std(axis=1, keepdims=True))
    )
    t = np.arange(int(0.4 * SFREQ)) / SFREQ
    tep = np.zeros((len(pos), len(t)))
    for lat, amp, width, centre in TEP:
        blob = np.exp(-np.sum((pos - ch_pos[centre]) ** 2, axis=1) / (2 * 0.05**2))
        tep += np.outer(blob, amp * np.exp(-0.5 * ((t - lat) / width) ** 2))
    art = np.outer(rng.choice([-1.0, 1.0], len(pos)), 20000.0 * np.exp(-t / 0.001))
    for k in pulse_samples:
        stop = min(k + len(t), n)
        data[:, k:stop] += (art + tep)[:, : stop - k]
    return data.T.astype(np.float32)


def write_session(folder: Path) -> Path:
    """The session folder: recording, plan; returns the XDF path."""
    folder.mkdir(parents=True)
    prefix = "sub-01_ses-1_run-01_"
    start, stop = -1.0, 63.0  # EEG from 1 s before the session start marker
    times = T0 + start + np.arange(int((stop - start) * SFREQ)) / SFREQ
    markers = _markers()
    pulse_t = np.array([t for t, m in markers if '"pulse"' in m])
    data = _eeg(len(times), np.searchsorted(times, pulse_t))
    keep = ~((times >= T0 + GAP[0]) & (times < T0 + GAP[1]))
    xdf = folder / f"{prefix}recording.xdf"
    with XdfWriter(xdf) as w:
        channels = [
            dict(label=ch, unit="microvolts", type="EEG") for ch in CHANNEL_NAMES_32
        ]
        w.add_stream(1, "TestEEG", "EEG", len(channels), SFREQ, "float32", channels)
        w.add_stream(2, "stimtrain-markers-test", "Markers", 1, 0, "string")
        idx = np.flatnonzero(keep)
        for chunk in np.array_split(idx, 64):
            w.write_samples(1, data[chunk], times[chunk])
        w.write_samples(2, [[m] for _, m in markers], [t for t, _ in markers])
        for t in np.arange(times[0], times[-1], 5.0):
            w.write_clock_offset(1, t, 0.0)
            w.write_clock_offset(2, t, 0.0)
        w.write_footer(1, times[idx[0]], times[idx[-1]], len(idx))
        w.write_footer(2, markers[0][0], markers[-1][0], len(markers))
    plan = {
        "blocks": [
            dict(index=i, type=kind, label=label, start_s=s, duration_s=d, **extra)
            for i, kind, label, s, d, extra in BLOCKS
        ],
        "trains": [
            dict(train=k + 1, block=3, kind="theta_burst", pulses=30, start_s=t)
            for k, t in enumerate(TRAINS)
        ],
        "total_pulses": 72,
    }
    (folder / f"{prefix}plan.json").write_text(json.dumps(plan))
    return xdf


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report") / "sub-01" / "ses-1"
    write_session(folder)
    analysis = session_analysis(folder, tesa=FAST, verbose="error")
    return analysis, analysis.report_path.read_text(encoding="utf-8")


def test_summary_says_what_was_delivered_recorded_and_needs_a_look(analysed):
    analysis, text = analysed
    summary = analysis.summary
    assert summary.delivered[0].startswith(
        "71 pulses of 72 planned: block 2 (spTMS) 11 of 12"
    )
    assert "block 3 (iTBS) 60 of 60 in 2 trains" in summary.delivered[0]
    assert "Task trials: block 4 (flanker) 12 of 12." in summary.delivered
    assert "Session completed." in summary.delivered
    eeg = next(line for line in summary.recorded if line.startswith("TestEEG"))
    assert "32 channels at 1000 Hz" in eeg and "1 gap (0.250 s)" in eeg
    look = "\n".join(summary.look)
    assert "Block 2 (spTMS): 11 of 12 planned pulses delivered (1 missing)." in look
    assert (
        f"pulse {LATE})" in look
        and "+3.00 ms" in look
        and "1 pulse more than 1 ms" in look
    )
    assert "TestEEG: 1 gap in the recording (0.250 s; 250 samples dropped)" in look
    assert len(summary.look) == 3, summary.look
    # Shown first, before the timeline and every other section.
    first = text.index("Needs a look (3)")
    assert first < text.index("One row per block") < text.index("effective rate (Hz)")


def test_tep_leaves_out_the_overlapping_block_and_says_why(analysed):
    analysis, text = analysed
    used = analysis.tables["tep_pulses"]
    assert used.loc[used["block"] == 3, "use"].sum() == 0
    assert used.loc[used["block"] == 2, "use"].all()
    assert set(analysis.evokeds) == {"all", "block=2.0"} or set(analysis.evokeds) == {
        "all",
        "block=2",
    }
    assert analysis.evokeds["all"].nave <= 11
    assert (
        "Block 3 (iTBS) is left out of the TEPs: its 60 pulses are as little as "
        "20 ms apart" in text
    )
    # The TEP is the single pulses' own: its N100 at Cz, where it was put.
    cz = analysis.evokeds["all"].copy().pick(["Cz"]).crop(0.07, 0.15)
    assert cz.times[np.argmin(cz.data[0])] == pytest.approx(0.1, abs=0.006)


def test_pulse_overlap_by_block_and_at_a_border():
    info = mne.create_info(["Cz"], 1000.0, "eeg")
    raw = mne.io.RawArray(np.zeros((1, 20000)), info, verbose=False)
    onsets = [1.0, 3.0, 5.0, 5.3, 8.0, 8.02, 8.04, 12.0]
    blocks = [1, 1, 1, 2, 3, 3, 3, 4]
    raw.set_annotations(
        mne.Annotations(
            onsets,
            0.0,
            "pulse",
            extras=[dict(block=b, pulse=k) for k, b in enumerate(blocks)],
        )
    )
    table = pulse_overlap(raw)
    # Block 3 overlaps itself; the pulse at 5.0 s (block 1) and 5.3 s (block
    # 2) overlap each other across blocks; the rest have a TEP of their own.
    assert list(table["block_overlaps"]) == [False] * 4 + [True] * 3 + [False]
    assert list(table["use"]) == [True, True, False, False, False, False, False, True]
    assert table["nearest_ms"].iloc[2] == pytest.approx(300.0)
    longer = pulse_overlap(raw, span=(-0.05, 0.2))
    assert longer["use"].iloc[2] and longer["use"].iloc[3]


def test_timeline_figure_draws_every_block_pulse_train_and_trial(analysed):
    analysis, _ = analysed
    markers = read_markers(analysis.xdf)
    plan = json.loads(
        (analysis.xdf.parent / "sub-01_ses-1_run-01_plan.json").read_text()
    )
    fig = timeline_figure(markers, plan)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [f"{i} · {label}" for i, _, label, *_ in BLOCKS]
    ticks = [
        c
        for c in ax.collections
        if isinstance(c, matplotlib.collections.LineCollection)
    ]
    assert sum(len(c.get_segments()) for c in ticks) == 71
    brackets = [line for line in ax.lines if len(line.get_xdata()) == 4]
    assert len(brackets) == 2
    assert brackets[0].get_xdata()[0] == pytest.approx(TRAINS[0], abs=0.01)
    dots = [
        c
        for c in ax.collections
        if isinstance(c, matplotlib.collections.PathCollection)
    ]
    assert sorted(len(c.get_offsets()) for c in dots) == [1, 11]
    notes = [t.get_text() for t in ax.texts]
    assert "11/12 pulses" in notes and "12/12 trials" in notes
    matplotlib.pyplot.close(fig)


#: What the page's layout is measured with, in the browser.
LAYOUT_JS = """
const body = document.body.getBoundingClientRect();
const page = document.documentElement.clientWidth;
const out = {page: page, docScroll: document.documentElement.scrollWidth, tables: []};
for (const table of document.querySelectorAll("table")) {
  const r = table.getBoundingClientRect();
  if (r.width === 0) continue;  // in a collapsed section
  let box = table.parentElement, scrolls = null;
  while (box && box !== document.body) {
    const ox = getComputedStyle(box).overflowX;
    if (ox === "auto" || ox === "scroll") { scrolls = box; break; }
    box = box.parentElement;
  }
  const head = table.tHead ? table.tHead.rows : [];
  const width = (row) => Array.from(row.cells).reduce((n, c) => n + c.colSpan, 0);
  out.tables.push({
    width: table.scrollWidth, right: r.right,
    box: scrolls ? scrolls.getBoundingClientRect().right : null,
    boxWidth: scrolls ? scrolls.clientWidth : null,
    headRows: head.length,
    head: head.length ? width(head[head.length - 1]) : null,
    rows: Array.from(table.tBodies).flatMap(b => Array.from(b.rows)).map(width),
    text: table.innerText.slice(0, 60),
    ours: table.classList.contains("dataframe"),
  });
}
return out;
"""


def _section_top(browser, title: str):
    """Page offset (px) of the report section whose header starts with title."""
    return browser.execute_script(
        """
        for (const el of document.querySelectorAll("button.accordion-button")) {
          if (el.innerText.trim().startsWith(arguments[0])) {
            return el.getBoundingClientRect().top + window.scrollY;
          }
        }
        return null;
        """,
        title,
    )


def _show(browser, title: str) -> None:
    """Scroll the section's header to the top, below the report's fixed bar."""
    browser.execute_script(
        """
        for (const el of document.querySelectorAll("button.accordion-button")) {
          if (el.innerText.trim().startsWith(arguments[0])) {
            el.scrollIntoView({behavior: "instant", block: "start"});
            const bar = document.querySelector("nav.navbar, .fixed-top");
            window.scrollBy({top: -(bar ? bar.offsetHeight + 8 : 80), behavior: "instant"});
            return;
          }
        }
        """,
        title,
    )


def _save(browser, name: str) -> Path:
    path = IMAGES / name
    assert browser.save_screenshot(str(path))
    # A 256-colour palette keeps the PNG small; a report is flat colours.
    from PIL import Image

    with Image.open(path) as img:
        img.convert("RGB").quantize(colors=256).save(path, optimize=True)
    return path


def test_report_in_a_browser(analysed, browser):
    analysis, _ = analysed
    IMAGES.mkdir(parents=True, exist_ok=True)
    browser.set_window_size(1200, 900)
    browser.get(analysis.report_path.resolve().as_uri())
    layout = browser.execute_script(LAYOUT_JS)
    assert layout["tables"], "no table laid out"
    assert layout["docScroll"] <= layout["page"], "the page scrolls sideways"
    for t in layout["tables"]:
        if t["right"] > layout["page"] or t["width"] > layout["page"]:
            # Wider than the page: only inside a scrolling box that fits it.
            assert t["box"] is not None and t["box"] <= layout["page"] + 1, t
            assert t["boxWidth"] < t["width"], t
        if t["ours"]:
            # One header row, with as many cells as every row has.
            assert t["headRows"] == 1, t
            assert all(n == t["head"] for n in t["rows"]), t
    assert sum(t["ours"] for t in layout["tables"]) >= 8
    # The summary is the first thing on the page, the timeline right after.
    tops = {
        title: _section_top(browser, title)
        for title in (
            "Summary",
            "Session timeline",
            "Session plan",
            "Timing diagnostics",
        )
    }
    assert None not in tops.values(), tops
    assert tops["Summary"] < tops["Session timeline"] < tops["Session plan"]
    height = browser.execute_script("return window.innerHeight")
    assert tops["Summary"] < height / 4  # at the top of the first screen
    timeline = browser.execute_script(
        """
        const img = document.querySelector("#Session_timeline img");
        return img ? [img.naturalWidth, img.getBoundingClientRect().width] : null;
        """
    )
    assert timeline is not None and timeline[0] > 0 and timeline[1] > 300
    _save(browser, "report_first_screen.png")
    _show(browser, "TMS-evoked potential: pulses used")
    _save(browser, "report_tep.png")
    _show(browser, "Time course (EEG)")
    _save(browser, "report_tep_time_course.png")
    for name in (
        "report_first_screen.png",
        "report_tep.png",
        "report_tep_time_course.png",
    ):
        size = (IMAGES / name).stat().st_size
        assert 10_000 < size < 400_000, (name, size)
