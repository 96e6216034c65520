"""Protocol structure: named variables and the block order of repeats.

``${name}`` substitution keeps a whole-value variable's type; a ``repeat``'s
blocks run in a fixed, seeded random, or counterbalanced (balanced Latin
square) order, and how each order was drawn is recorded for the plan.
Repeats are counted before they are unrolled: a protocol that would unroll to
more than :data:`~.bounds.MAX_BLOCKS` blocks or :data:`~.bounds.MAX_PULSES`
pulses, or has a task block of more than
:data:`~.bounds.MAX_TRIALS_PER_BLOCK` trials, is refused with a located
problem before any block is copied.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .blocks import Block, TaskBlock, block_pulses
from .bounds import MAX_BLOCKS, MAX_PULSES, MAX_TRIALS_PER_BLOCK, count_text
from .errors import ProtocolError
from .fields import FieldReader
from .yamlpos import LocatedDocument

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute(r: FieldReader, value: Any, path: tuple, variables: dict) -> Any:
    """Replace ``${name}`` in every string; a whole ``${name}`` keeps its type."""
    if isinstance(value, dict):
        return {k: substitute(r, v, (*path, k), variables) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(r, v, (*path, i), variables) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    names = _VAR.findall(value)
    missing = [n for n in names if n not in variables]
    if missing:
        known = ", ".join(sorted(variables)) or "none defined"
        r.fail(path, f"uses undefined variable '{missing[0]}' (known: {known})", value)
        return value
    whole = _VAR.fullmatch(value)
    if whole:
        return variables[whole.group(1)]
    return _VAR.sub(lambda m: str(variables[m.group(1)]), value)


def read_variables(r: FieldReader, top: dict, inherited: dict) -> dict:
    if "variables" not in top:
        return dict(inherited)
    m = r.mapping(top["variables"], ("variables",))
    out = {}
    for name, value in (m or {}).items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            r.fail(("variables", name), "must be a name (letters, digits, _)", name)
        elif isinstance(value, (dict, list)) or value is None:
            r.fail(("variables", name), "must be a number or text", value)
        else:
            out[name] = value
    # The including protocol's values win over a fragment's defaults.
    out.update(inherited)
    return out


@dataclass
class RepeatTemplate:
    """A ``repeat`` as read, before its blocks are ordered and unrolled."""

    times: int
    order: str
    label: str | None
    children: list
    src: tuple
    doc: LocatedDocument


def participant_number(participant: str | None) -> int:
    """Number used to pick a participant's counterbalancing row.

    The digits in the ID (``P07`` → 7), or a stable hash when there are none,
    so that consecutive participants get consecutive rows.
    """
    if participant is None:
        return 0
    digits = re.sub(r"\D", "", participant)
    return int(digits) if digits else zlib.crc32(participant.encode())


def balanced_latin_square_row(n: int, row: int) -> list[int]:
    """Row ``row`` of a balanced Latin square of order ``n`` (Williams design).

    For even ``n`` every item precedes every other equally often across the
    ``n`` rows; for odd ``n`` the mirrored rows (``n .. 2n-1``) complete it.
    """
    first = [0]
    lo, hi = 1, n - 1
    for k in range(1, n):
        if k % 2:
            first.append(lo)
            lo += 1
        else:
            first.append(hi)
            hi -= 1
    period = n if n % 2 == 0 else 2 * n
    row %= period
    seq = [(x + row) % n for x in first]
    return seq[::-1] if row >= n else seq


def _unrolled(item: Block | RepeatTemplate) -> tuple[int, int]:
    """Blocks and pulses ``item`` unrolls to, counted without unrolling."""
    if not isinstance(item, RepeatTemplate):
        return 1, block_pulses(item)
    blocks = pulses = 0
    for child in item.children:
        b, p = _unrolled(child)
        blocks += b
        pulses += p
    return item.times * blocks, item.times * pulses


def _walk(items: list):
    """Every block template in ``items``, inside repeats too, each once."""
    for item in items:
        if isinstance(item, RepeatTemplate):
            yield from _walk(item.children)
        else:
            yield item


def _crossing(sizes: list[int], bound: int) -> int:
    """Index of the item at which the running total of ``sizes`` passes ``bound``."""
    running = 0
    for i, size in enumerate(sizes):
        running += size
        if running > bound:
            return i
    raise AssertionError("the total does not pass the bound")


def check_unrolled_size(items: list) -> None:
    """Refuse a protocol too large to unroll, before anything is unrolled.

    Parameters
    ----------
    items : list
        The protocol's top-level templates (blocks and
        :class:`RepeatTemplate`), with includes already read in.

    Raises
    ------
    ProtocolError
        A task block of more than :data:`~.bounds.MAX_TRIALS_PER_BLOCK`
        trials (each is reported); else more than :data:`~.bounds.MAX_BLOCKS`
        blocks or :data:`~.bounds.MAX_PULSES` pulses once unrolled, located at
        the ``times`` of the outermost repeat (or at the block) that passes
        the bound, with the protocol's total.
    """
    problems = [
        block.doc.problem(
            (*block.src, "trials"),
            f"must be at most {MAX_TRIALS_PER_BLOCK} (the most trials in one block)",
            block.trials,
        )
        for block in _walk(items)
        if isinstance(block, TaskBlock) and block.trials > MAX_TRIALS_PER_BLOCK
    ]
    if problems:
        raise ProtocolError(problems)
    sizes = [_unrolled(item) for item in items]
    for which, bound, noun in ((0, MAX_BLOCKS, "blocks"), (1, MAX_PULSES, "pulses")):
        counts = [size[which] for size in sizes]
        total = sum(counts)
        if total <= bound:
            continue
        at = _crossing(counts, bound)
        item = items[at]
        in_all = f"{count_text(total)} {noun}"
        if isinstance(item, RepeatTemplate):
            problem = item.doc.problem(
                (*item.src, "times"),
                f"makes {in_all} in all once repeated; "
                f"a protocol may have at most {bound}",
                item.times,
            )
        else:
            problem = item.doc.problem(
                item.src,
                f"makes {in_all} in all; a protocol may have at most {bound}",
                f"{count_text(counts[at])} {noun}",
            )
        raise ProtocolError([problem])


def expand_blocks(
    items: list,
    seed: int,
    participant: str | None,
    order: list[str],
    counter: list[int],
) -> list[Block]:
    """Unroll repeats into blocks, drawing and recording each repeat's order.

    Parameters
    ----------
    items : list
        Templates as read: blocks and :class:`RepeatTemplate`.
    seed : int
        The protocol's seed (random orders).
    participant : str | None
        Whose counterbalancing row to use.
    order : list of str
        Appended to: how each non-fixed order was drawn, for the plan.
    counter : list of int
        ``[0]``: numbers the repeats in reading order (random streams).

    Raises
    ------
    ProtocolError
        When the protocol would be too large (:func:`check_unrolled_size`),
        before anything is unrolled.
    """
    check_unrolled_size(items)
    return _unroll(items, seed, participant, order, counter)


def _unroll(
    items: list,
    seed: int,
    participant: str | None,
    order: list[str],
    counter: list[int],
) -> list[Block]:
    out: list[Block] = []
    for item in items:
        if not isinstance(item, RepeatTemplate):
            out.append(item)
            continue
        counter[0] += 1
        group = counter[0]
        name = item.label or f"repeat at {item.doc.file}:{item.doc.where(item.src)[0]}"
        for rep in range(item.times):
            idx = list(range(len(item.children)))
            if item.order == "random":
                rng = np.random.default_rng([seed, group, rep])
                idx = rng.permutation(len(idx)).tolist()
                how = f"random from seed {seed}"
            elif item.order == "counterbalanced":
                row = participant_number(participant) + rep
                idx = balanced_latin_square_row(len(idx), row)
                who = participant if participant is not None else "(no participant)"
                how = f"counterbalanced, Latin-square row {row} for {who}"
            else:
                how = "fixed"
            children = [item.children[i] for i in idx]
            if item.order != "fixed":
                labels = [_template_label(c) for c in children]
                order.append(
                    f"{name} {rep + 1}/{item.times}: {how}: {', '.join(labels)}"
                )
            for child in _unroll(children, seed, participant, order, counter):
                if item.times > 1 and child.label is not None:
                    child = replace(
                        child, label=f"{child.label} ({rep + 1}/{item.times})"
                    )
                out.append(child)
    return out


def _template_label(item) -> str:
    if isinstance(item, RepeatTemplate):
        return item.label or "repeat"
    return item.label or item.type


def number_blocks(blocks: list[Block]) -> tuple[Block, ...]:
    return tuple(
        replace(b, index=i, label=b.label or f"{b.type}-{i + 1}")
        for i, b in enumerate(blocks)
    )
