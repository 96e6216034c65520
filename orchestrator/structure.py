"""Protocol structure: named variables and the block order of repeats.

``${name}`` substitution keeps a whole-value variable's type; a ``repeat``'s
blocks run in a fixed, seeded random, or counterbalanced (balanced Latin
square) order, and how each order was drawn is recorded for the plan.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .blocks import Block
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


def expand_blocks(
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
            for child in expand_blocks(children, seed, participant, order, counter):
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
