"""Key presses for Builder keyboard components from the simulated participant.

The simulated participant presses a key the way a person's key reaches
PsychoPy: a key-down (and, for a component that registers releases, a
key-up) message goes into the keyboard device's buffer, through the device's
own parser, with its time on PsychoPy's clock. The component then reads it
with its usual ``getKeys`` call, filtering by its allowed keys and computing
its RT from its own clock, exactly as for a real key.

What is pressed and when comes from
:class:`~stimtrain.tasks.participant.SimulatedParticipant`: an RT drawn from
its ex-Gaussian model, the correct answer (the component's *correct answer*
field, evaluated in the experiment) or, as an error, another allowed key, and
no press at all when withholding is correct (a no-go trial) or on a lapse.
A component that waits for a key with no time limit always gets one, later,
so a simulated run never hangs on an instructions screen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..api import Trial
from ..participant import SimulatedParticipant

#: How long a simulated key is held down (s), for components that register
#: the release.
HOLD_S = 0.1
#: The key a component that accepts any key gets.
ANY_KEY = "space"


@dataclass
class PlannedPress:
    """A key the participant will press: its name and its LSL key-down time."""

    key: str
    down: float
    released: bool = False
    pressed: bool = False
    code: Any = None


class SimulatedKeys:
    """The simulated participant at a Builder experiment's keyboard.

    Parameters
    ----------
    participant : SimulatedParticipant
        Who responds (its profile for the experiment's name, or the default).
    task : str
        The experiment's name, which selects the participant's profile.
    clock : callable
        The LSL clock.
    """

    def __init__(
        self, participant: SimulatedParticipant, task: str, clock: Callable[[], float]
    ) -> None:
        self.participant = participant
        self.task = task
        self.clock = clock

    def plan(
        self,
        trial: Trial,
        onset: float,
        keys: list[str],
        *,
        waits: bool,
    ) -> PlannedPress | None:
        """Decide the response to one start of a keyboard component.

        Parameters
        ----------
        trial : Trial
            The loop iteration as the participant sees it: its condition and
            correct key (``None``: withholding is correct).
        onset : float
            LSL time of the flip that started the component.
        keys : list of str
            The keys the component accepts.
        waits : bool
            The component waits for a key with no time limit.

        Returns
        -------
        press : PlannedPress | None
            ``None``: no key is pressed.
        """
        key, rt = self.participant.respond(self.task, trial, keys)
        if key is None and waits:
            # A screen that waits for a key gets one: a late press.
            key = trial.correct_key or keys[0]
            rt = 2.0 * self.participant.expected_rt(self.task, trial.condition)
        if key is None:
            return None
        return PlannedPress(key=key, down=onset + rt)

    def step(self, device, press: PlannedPress, *, release: bool) -> None:
        """Put the planned key's messages into the device once they are due.

        Parameters
        ----------
        device : psychopy.hardware.keyboard.KeyboardDevice
            The component's keyboard device.
        press : PlannedPress
            The planned key.
        release : bool
            Also release it (``HOLD_S`` later), for a component that waits
            for the release.
        """
        now = self.clock()
        if not press.pressed and now >= press.down:
            press.pressed = True
            press.code = _message(device, press.key, press.down, now, down=True)
        if release and press.pressed and not press.released:
            if now >= press.down + HOLD_S:
                press.released = True
                _message(device, press.code, press.down + HOLD_S, now, down=False)


def _message(device, key, when: float, now: float, *, down: bool):
    """Give the device one key message stamped ``when`` (LSL), now ``now``.

    Returns the key code the device uses for the key (for its release).
    """
    from psychopy import clock as pclock
    from psychopy import logging as plogging
    from psychopy.hardware.keyboard import KeyboardDevice, KeyPress

    # The same instant on the clock the keyboard's messages are stamped with
    # (Psychtoolbox's GetSecs when it is there; core.getTime is another one).
    t = pclock.getTime() - (now - when)
    if KeyboardDevice._backend == "ptb":
        response = device.parseMessage({"down": down, "keycode": key, "time": t})
        if response is not None:
            device.receiveMessage(response)
            return response.code
        return key
    if not down:
        return key
    # Other backends: a key press made the way their parsers make one.
    press = KeyPress(
        code=key, tDown=t - plogging.defaultClock.getLastResetTime(), name=key
    )
    press.rt = t - device.clock.getLastResetTime()
    device.receiveMessage(press)
    return key


def correct_answer(component, namespace: dict) -> tuple[bool, str | None]:
    """Whether a keyboard component scores its key, and its correct answer now.

    Parameters
    ----------
    component : Component | None
        The keyboard component (``None``: unknown, not scored).
    namespace : dict
        The running script's globals, where a loop puts its current row.

    Returns
    -------
    scores : bool
        Its *store correct* field.
    answer : str | None
        Its *correct answer* field evaluated in the script (``$corrAns`` →
        the current row's ``corrAns``); ``None`` when it is empty or
        ``None``, where Builder counts no key as the correct response.
    """
    if component is None or component.params.get("storeCorrect") != "True":
        return False, None
    text = component.params.get("correctAns", "").strip()
    if text.startswith("$"):
        try:
            value = eval(text[1:], namespace)  # noqa: S307 - the experiment's own code
        except Exception:  # noqa: BLE001 - no answer then
            value = None
    else:
        value = text
    if value is None or str(value).strip().lower() in ("", "none"):
        return True, None
    return True, str(value)
