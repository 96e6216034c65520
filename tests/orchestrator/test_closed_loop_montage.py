"""Montages: the Hjorth arithmetic and located refusals of unknown channels."""

from __future__ import annotations

import numpy as np
import pytest

from stimtrain.orchestrator.session.closed_loop import PRESETS, Montage


def test_c3_hjorth_is_c3_minus_the_mean_of_its_four_neighbours():
    names = ["Fz", "CP5", "C3", "FC1", "CP1", "FC5", "Cz"]
    data = np.random.default_rng(0).normal(size=(50, len(names)))
    col = {ch: data[:, k] for k, ch in enumerate(names)}
    expected = col["C3"] - (col["FC1"] + col["FC5"] + col["CP1"] + col["CP5"]) / 4
    np.testing.assert_allclose(PRESETS["c3_hjorth"].apply(data, names), expected)


def test_weights_follow_the_stream_order():
    m = Montage.from_mapping({"C3": 2.0, "Cz": -0.5})
    np.testing.assert_array_equal(m.vector(["Cz", "Fz", "C3"]), [-0.5, 0.0, 2.0])


def test_unknown_channels_are_named():
    with pytest.raises(
        ValueError, match=r"montage channel\(s\) \['FC5', 'CP5'\] not in the stream"
    ):
        PRESETS["c3_hjorth"].vector(["C3", "FC1", "CP1", "Cz"])
    assert PRESETS["c3_hjorth"].missing(["C3", "FC1", "CP1"]) == ["FC5", "CP5"]


def test_a_channel_twice_or_all_zero_weights_are_refused():
    with pytest.raises(ValueError, match=r"more than once: \['C3'\]"):
        Montage((("C3", 1.0), ("C3", -1.0)))
    with pytest.raises(ValueError, match="every weight"):
        Montage((("C3", 0.0),))
    with pytest.raises(ValueError, match="at least one neighbour"):
        Montage.hjorth("C3", ())
