"""A channel montage: named EEG channels with weights, combined into one signal.

The sensorimotor mu rhythm is read through a spatial filter: the C3 Hjorth
montage (C3 minus the mean of FC1, FC5, CP1 and CP5; Hjorth 1975) takes away
what the neighbours share (volume-conducted activity, the reference) and
keeps what is local to the left motor cortex.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ...language.trigger import MONTAGE_PRESETS


@dataclass(frozen=True)
class Montage:
    """Named channels and their weights; the output is the weighted sum.

    Parameters
    ----------
    weights : tuple of (str, float)
        ``(channel, weight)`` pairs, each channel once.
    """

    weights: tuple[tuple[str, float], ...]

    def __post_init__(self) -> None:
        names = [ch for ch, _ in self.weights]
        if not names:
            raise ValueError("a montage needs at least one channel")
        twice = sorted({ch for ch in names if names.count(ch) > 1})
        if twice:
            raise ValueError(f"montage names channels more than once: {twice}")
        if all(w == 0 for _, w in self.weights):
            raise ValueError("every weight of the montage is 0")

    @classmethod
    def from_mapping(cls, weights: Mapping[str, float]) -> Montage:
        """A montage from ``{channel: weight}``."""
        return cls(tuple((str(ch), float(w)) for ch, w in weights.items()))

    @classmethod
    def hjorth(cls, centre: str, neighbours: Sequence[str]) -> Montage:
        """``centre`` minus the mean of ``neighbours`` (a Hjorth Laplacian).

        Parameters
        ----------
        centre : str
            The channel over the source.
        neighbours : sequence of str
            The channels around it.

        Returns
        -------
        Montage
        """
        if not neighbours:
            raise ValueError("a Hjorth montage needs at least one neighbour")
        w = -1.0 / len(neighbours)
        return cls(((centre, 1.0), *((ch, w) for ch in neighbours)))

    @property
    def channels(self) -> list[str]:
        """The channel labels, in the montage's order."""
        return [ch for ch, _ in self.weights]

    def missing(self, available: Sequence[str]) -> list[str]:
        """The montage's channels that are not among ``available``."""
        have = set(available)
        return [ch for ch in self.channels if ch not in have]

    def vector(self, ch_names: Sequence[str]) -> np.ndarray:
        """The weights as a vector over a stream's channels.

        Parameters
        ----------
        ch_names : sequence of str
            The stream's channel labels, in stream order.

        Returns
        -------
        ndarray, shape (n_channels,)
            Zero for the channels the montage does not use.

        Raises
        ------
        ValueError
            When a channel of the montage is not in the stream, naming it.
        """
        missing = self.missing(ch_names)
        if missing:
            raise ValueError(
                f"montage channel(s) {missing} not in the stream (it has "
                f"{len(ch_names)} channels: {', '.join(ch_names[:40])})"
            )
        index = {ch: k for k, ch in enumerate(ch_names)}
        out = np.zeros(len(ch_names))
        for ch, w in self.weights:
            out[index[ch]] = w
        return out

    def apply(self, data: np.ndarray, ch_names: Sequence[str]) -> np.ndarray:
        """Combine samples ``(n_times, n_channels)`` into one signal ``(n_times,)``."""
        return np.asarray(data, float) @ self.vector(ch_names)


#: Named montages a protocol can ask for (the protocol language's table).
PRESETS: dict[str, Montage] = {
    name: Montage(weights) for name, weights in MONTAGE_PRESETS.items()
}
