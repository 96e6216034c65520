"""Blocks without pulses or a task: rest, instructions, waiting for the operator."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pylsl

from ..language.protocol import InstructionsBlock, RestBlock, WaitBlock
from .control import SessionAborted

if TYPE_CHECKING:
    from .context import BlockContext


def run_rest(ctx: BlockContext, block: RestBlock) -> dict:
    """A fixation cross for the block's duration (ends early on abort or skip)."""
    from stimtrain.tasks.runner import show_fixation

    show_fixation(
        ctx.win,
        block.duration_s,
        clock=pylsl.local_clock,
        should_stop=ctx.control.ending,
    )
    return {}


def run_instructions(ctx: BlockContext, block: InstructionsBlock) -> dict:
    """The block's text on the participant's window for its duration."""
    from stimtrain.tasks.runner import show_text

    show_text(ctx.win, block.text, block.duration_s, clock=pylsl.local_clock)
    return {}


def run_wait(ctx: BlockContext, block: WaitBlock) -> dict:
    """Ask the operator to go on; a no ends the session.

    Raises
    ------
    SessionAborted
        When the operator declines.
    """
    from stimtrain.tasks.runner import show_text

    show_text(ctx.win, block.participant_text or "Please wait.", 0.0)
    if ctx.simulated_rig:
        # Nobody sits at a simulated rig: confirm, and say so in the journal.
        ctx.say(f"  operator: {block.text} (auto-confirmed on the simulated rig)")
        return {"confirmed_by": "auto (simulated rig)"}
    answer = ctx.confirm(block.text)
    ctx.journal.write("operator_key", block=block.index, answer=answer)
    if not answer:
        ctx.control.stop.set(f"operator declined: {block.text}")
        raise SessionAborted(ctx.control.stop.reason)
    return {"confirmed_by": "operator"}
