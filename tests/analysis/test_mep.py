"""MEPs and recruitment curves on EMG with a known Boltzmann truth."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import RECRUITMENT_TRUTH

from stimtrain.analysis.mep import mep_epochs, mep_table
from stimtrain.analysis.recruitment import boltzmann, fit_recruitment, motor_threshold

INTENSITIES = np.repeat(np.arange(35, 80, 5), 10).astype(float)


@pytest.fixture(scope="module")
def emg_raw(make_raw):
    rng = np.random.default_rng(3)
    powers = rng.permutation(INTENSITIES)
    return make_raw(
        sfreq=5000.0, n_pulses=len(powers), spacing=0.3, powers=powers, eeg=False
    )


def test_mep_amplitudes_per_trial(emg_raw):
    raw, truth = emg_raw
    meps = mep_table(raw)
    assert len(meps) == len(truth["powers"])
    assert list(meps["pulse"]) == list(range(len(meps)))
    np.testing.assert_array_equal(meps["power"], truth["powers"])
    big = truth["mep_uv"] > 100
    # Noise (2 µV SD) adds at most a few µV to peak-to-peak.
    np.testing.assert_allclose(
        meps["mep_uv"][big], truth["mep_uv"][big], rtol=0.1, atol=0
    )
    # The 300 µV stimulus artifact in 0-3 ms is outside the window: small
    # MEPs stay small.
    small = truth["mep_uv"] < 40
    assert small.sum() >= 5
    assert meps["mep_uv"][small].max() < 60
    assert not meps["rejected"].any()
    onset = meps["latency_ms"][big]
    assert ((onset >= 20) & (onset <= 24)).all()


def test_pre_activation_rejected(emg_raw):
    raw, _ = emg_raw
    raw = raw.copy()
    sfreq = raw.info["sfreq"]
    onset = raw.annotations.onset[3]
    k = int(round(onset * sfreq))
    data = raw._data
    # 120 µV of voluntary EMG 30-10 ms before pulse 3.
    data[-1, k - int(0.03 * sfreq) : k - int(0.01 * sfreq)] += 60e-6 * np.sign(
        np.sin(np.arange(int(0.02 * sfreq)))
    )
    meps = mep_table(raw)
    assert list(meps.index[meps["rejected"]]) == [3]
    assert meps.loc[3, "pre_uv"] > 100
    meps = mep_table(raw, pre_max_uv=200.0)
    assert not meps["rejected"].any()


def test_recruitment_fit_recovers_s50(emg_raw):
    raw, truth = emg_raw
    meps = mep_table(raw)
    fit = fit_recruitment(meps["power"], meps["mep_uv"], n_boot=200)
    assert fit.params["s50"] == pytest.approx(RECRUITMENT_TRUTH["s50"], abs=2.0)
    assert fit.params["k"] == pytest.approx(RECRUITMENT_TRUTH["k"], rel=0.35)
    assert fit.params["mep_max"] == pytest.approx(
        RECRUITMENT_TRUTH["mep_max"], rel=0.15
    )
    ci = fit.ci
    assert ci.loc["s50", "low"] < fit.params["s50"] < ci.loc["s50", "high"]
    assert ci.loc["s50", "high"] - ci.loc["s50", "low"] < 4
    assert fit.ci_method == "bootstrap" and fit.n_boot >= 180
    cov = fit_recruitment(meps["power"], meps["mep_uv"], ci="covariance")
    assert cov.params == pytest.approx(fit.params)
    assert cov.ci.loc["s50", "low"] < cov.params["s50"] < cov.ci.loc["s50", "high"]
    table = fit.table()
    assert list(table["parameter"]) == ["mep_min", "mep_max", "s50", "k"]
    # Intensity at half range is S50 by definition.
    half = (fit.params["mep_min"] + fit.params["mep_max"]) / 2
    assert fit.intensity_at(half) == pytest.approx(fit.params["s50"])


def test_motor_threshold_from_trials():
    s = np.repeat([40.0, 42, 44, 46, 48], 10)
    # Fraction of >= 50 µV MEPs: 0.1, 0.3, 0.5, 0.8, 1.0
    above = {40: 1, 42: 3, 44: 5, 46: 8, 48: 10}
    amp = np.concatenate([[80.0] * above[v] + [20.0] * (10 - above[v]) for v in above])
    rmt, table = motor_threshold(s, amp)
    assert rmt == 44
    assert list(table["fraction_above"]) == [0.1, 0.3, 0.5, 0.8, 1.0]
    # A lucky low intensity does not set the threshold.
    amp2 = amp.copy()
    amp2[:6] = 80.0
    assert motor_threshold(s, amp2)[0] == 44
    assert np.isnan(motor_threshold(s, np.zeros_like(s))[0])


def test_motor_threshold_agrees_with_the_curve(emg_raw):
    raw, _ = emg_raw
    meps = mep_table(raw)
    rmt, _ = motor_threshold(meps["power"], meps["mep_uv"])
    p = RECRUITMENT_TRUTH
    # Where the true curve reaches 50 µV (median of the lognormal noise).
    s_true = p["s50"] - p["k"] * np.log(
        (p["mep_max"] - p["mep_min"]) / (50 - p["mep_min"]) - 1
    )
    assert abs(rmt - s_true) <= 5  # the tested intensities are 5 %MSO apart


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at least 5 trials at 4 or more"):
        fit_recruitment([1, 2, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="ci must be"):
        fit_recruitment(np.arange(10), np.arange(10), ci="magic")
    assert boltzmann(1e6, 0, 1, 0, 1) == pytest.approx(1.0)


def test_mep_needs_emg(make_raw):
    raw, _ = make_raw(n_pulses=3, emg=False, sfreq=1000.0)
    with pytest.raises(ValueError, match="EMG channels"):
        mep_epochs(raw)
    with pytest.raises(ValueError, match="window must lie within"):
        mep_table(make_raw(n_pulses=3, eeg=False, sfreq=1000.0)[0], window=(0.0, 0.5))


def test_meps_from_the_simulated_amplifier_over_lsl():
    """SimulatedEEG's EMG channel, streamed over real LSL, read back as MEPs."""
    import time
    import uuid

    import mne
    import pylsl

    from stimtrain.devices.sim_eeg import SimulatedEEG

    name = f"test-sim-emg-{uuid.uuid4().hex[:8]}"
    sim = SimulatedEEG(
        n_channels=2, sfreq=1000.0, name=name, noise_uv=5.0, emg_channels=["FDI"]
    )
    info = sim.info
    assert info.channel_count() == 3
    inlet = pylsl.StreamInlet(info, max_buflen=60)
    # Connected before the first sample: an inlet gets only later samples.
    inlet.open_stream(timeout=5)
    sim.start()
    try:
        powers = [40, 50, 55, 60, 70, 80] * 2
        t_first = sim.t0 + 0.3
        for ii, power in enumerate(powers):
            sim.add_pulse(t_first + 0.15 * ii, power)
        last = round((t_first + 0.15 * len(powers) + 0.2 - sim.t0) * sim.sfreq)
        chunks = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            data, stamps = inlet.pull_chunk(timeout=0.2, max_samples=10_000)
            if stamps:
                chunks.append((np.asarray(data), np.asarray(stamps)))
                if round((stamps[-1] - sim.t0) * sim.sfreq) >= last:
                    break
    finally:
        sim.stop()
    data = np.concatenate([c[0] for c in chunks])
    samples = np.round((np.concatenate([c[1] for c in chunks]) - sim.t0) * 1000).astype(
        int
    )
    assert (np.diff(samples) == 1).all()
    raw = mne.io.RawArray(
        data.T * 1e-6,
        mne.create_info(["C3", "Cz", "FDI"], 1000.0, ["eeg", "eeg", "emg"]),
        verbose=False,
    )
    meps = sim.meps
    onsets = [(s - samples[0]) / 1000.0 for _, s, _, _ in meps]
    extras = [{"pulse": i, "power": p} for i, (_, _, p, _) in enumerate(meps)]
    raw.set_annotations(
        mne.Annotations(onsets, 0.0, ["pulse"] * len(onsets), extras=extras)
    )
    table = mep_table(raw)
    truth = np.array([a for *_, a in meps])
    big = truth > 50
    np.testing.assert_allclose(table["mep_uv"][big], truth[big], rtol=0.1)
    np.testing.assert_array_equal(table["power"], powers)
    # The truth follows the simulator's recruitment curve.
    assert np.median(truth / sim.mep_curve(powers)) == pytest.approx(1.0, abs=0.25)
