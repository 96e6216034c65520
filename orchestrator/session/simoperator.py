"""The simulated rig's operator: moves the coil over sites and labels them.

Nobody sits at a simulated rig, so a hotspot block would wait for keys that
never come. This operator does what a person does: puts the coil on a site,
presses the site's digit, lets the block give that site its pulses, moves
on, and after the last site keeps the best one (``k``). The coil's distance
from the hotspot reaches the simulated participant's motor system through
the simulated rig (its MEPs shrink with distance). Every key it presses goes
through the same path as the operator's, journal included.
"""

from __future__ import annotations

import numpy as np

#: Distances (mm) of the sites from the simulated hotspot: a grid an operator
#: covers around a landmark, the hotspot among them.
SITES_MM = (0.0, 7.0, 10.0, 14.0, 20.0)


class SimulatedOperator:
    """Visits every site of :data:`SITES_MM` in a seeded order, then keeps the best.

    Parameters
    ----------
    rig : SimulatedRigProcess
        The simulated rig, which moves its coil on request.
    seed : int
        Seed of the visiting order.
    """

    def __init__(self, rig, *, seed: int = 0) -> None:
        self.rig = rig
        order = np.random.default_rng([seed, 11]).permutation(len(SITES_MM))
        self.sites = [(int(i) + 1, SITES_MM[int(i)]) for i in order]
        self.visited = 0
        self.current: int | None = None

    @property
    def hotspot_site(self) -> int:
        """The label of the site on the hotspot (the truth a search should find)."""
        return next(label for label, mm in self.sites if mm == 0.0)

    def before_pulse(self, control, sites: dict[int, list[float]], least: int) -> None:
        """Before each pulse of a hotspot block: move on or keep, as needed."""
        if self.current is not None and len(sites.get(self.current, [])) < least:
            return
        if self.visited < len(self.sites):
            label, mm = self.sites[self.visited]
            self.visited += 1
            self.current = label
            self.rig.move_coil(mm)
            control.on_key(str(label), f"site {label}")
        else:
            control.on_key("k", "accept_site")
