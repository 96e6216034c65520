"""PsychoPy text stimuli shared by the tasks: build once, retext, draw.

Every built-in task shows its stimulus as text (letters, arrows, words,
digits). :func:`text_stim` builds one at the block's ``letter_height``,
:func:`draw_text` draws it with a trial's text, and :class:`TextStimulus` is
the mixin of a task whose whole stimulus is one such text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    from psychopy.visual import TextStim, Window

    from .api import Trial


def text_stim(win: Window, params: Mapping[str, Any], **style: Any) -> TextStim:
    """Create a text stimulus ``letter_height`` high, not logged.

    Parameters
    ----------
    win : psychopy.visual.Window
        The window to draw into.
    params : mapping
        Validated task parameters, with ``letter_height`` (window heights).
    **style
        More :class:`psychopy.visual.TextStim` arguments (``text``,
        ``color``, ``font``, ``pos``, ...); ``text`` defaults to ``""``.

    Returns
    -------
    stim : psychopy.visual.TextStim
    """
    from psychopy import visual

    style.setdefault("text", "")
    style.setdefault("height", params["letter_height"])
    # A log line per text change would flood the log at the frame rate.
    return visual.TextStim(win, autoLog=False, **style)


def built(stim: TextStim | None) -> TextStim:
    """Return ``stim``, or raise if the block's stimuli were not built yet.

    Parameters
    ----------
    stim : psychopy.visual.TextStim | None
        A stimulus kept by :meth:`~stimtrain.tasks.api.Task.build_stimuli`.

    Returns
    -------
    stim : psychopy.visual.TextStim

    Raises
    ------
    RuntimeError
        If ``stim`` is ``None``.
    """
    if stim is None:
        raise RuntimeError("build_stimuli() must be called before drawing")
    return stim


def draw_text(stim: TextStim | None, text: str) -> None:
    """Draw a text stimulus showing ``text`` into the back buffer.

    Parameters
    ----------
    stim : psychopy.visual.TextStim | None
        From :func:`text_stim`; ``None`` (not built) raises ``RuntimeError``.
    text : str
        What it shows.
    """
    stim = built(stim)
    # TextStim re-renders on every text assignment, so assign only a change:
    # this runs every frame.
    if stim.text != text:
        stim.text = text
    stim.draw()


class TextStimulus:
    """Mixin for a :class:`~stimtrain.tasks.api.Task` whose stimulus is one text.

    :meth:`build_stimuli` makes the text stimulus (:attr:`text_style`) and
    :meth:`draw_stimulus` shows ``trial.stimulus[text_field]`` on it.
    """

    #: The entry of :attr:`Trial.stimulus <stimtrain.tasks.api.Trial.stimulus>`
    #: that is shown.
    text_field: ClassVar[str] = "text"
    #: :func:`text_stim` arguments of the stimulus.
    text_style: ClassVar[dict[str, Any]] = {"color": "white"}

    _stim: TextStim | None = None

    def build_stimuli(self, win: Window, params: Mapping[str, Any]) -> None:
        """Create the text stimulus, styled by :attr:`text_style`."""
        self._stim = text_stim(win, params, **self.text_style)

    def draw_stimulus(self, trial: Trial) -> None:
        """Draw ``trial.stimulus[text_field]``."""
        draw_text(self._stim, trial.stimulus[self.text_field])
