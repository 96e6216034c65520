"""Bounds on what a file may make the loader do: bounded before expanded.

A protocol, fragment, rig, limits or thresholds file is refused, with a
located problem, before it can make ``stimtrain validate`` do unbounded work:
read a huge or endless file, compose values nested thousands of levels deep,
expand YAML aliases exponentially, unroll repeats or build pulse arrays of
astronomic size. Every bound is far above any real protocol (the largest in
the library has a few hundred values, 3000 pulses and a dozen blocks), so
only hostile or broken files reach them.
"""

from __future__ import annotations

import math

#: Largest file read (1 MiB): the library's largest protocol is under 4 KiB.
MAX_FILE_BYTES = 1 << 20

#: Deepest nesting of lists and mappings: protocols nest about 6 levels, and
#: PyYAML's composer and our builder recurse once per level.
MAX_DEPTH = 64

#: Most nodes written in one file: PyYAML's pure-Python composer takes about
#: 17 µs and 0.6 KiB per node, so this keeps composing under 2 s and 70 MiB.
MAX_NODES = 100_000

#: Most values built from one file with every alias expanded (a "billion
#: laughs" alias bomb builds 10**10 from a few lines).
MAX_VALUES = 200_000

#: Most blocks once repeats and includes are unrolled: a session of a few
#: hours has tens of blocks.
MAX_BLOCKS = 10_000

#: Most pulses in one block, read before any pulse array is built: a clinical
#: 10 Hz session has 3000.
MAX_PULSES_PER_BLOCK = 100_000

#: Most pulses in a whole protocol with its repeats unrolled, before planning:
#: per-day caps are a few thousand, and compiling and judging this many takes
#: about 0.3 s and 100 MB (a million took 385 MB).
MAX_PULSES = 200_000

#: Most trials in one task block: a long training block has a few hundred.
MAX_TRIALS_PER_BLOCK = 100_000


def count_text(n: int) -> str:
    """Render a count for a message, briefly even when it is astronomic.

    Parameters
    ----------
    n : int
        A non-negative count, possibly with thousands of digits.

    Returns
    -------
    str
        ``"12000"`` below 10**15, else ``"about 1.00e27"`` (Python refuses to
        print integers of more than 4300 digits).
    """
    if n < 10**15:
        return str(n)
    exponent = int(math.log10(n))
    # The float logarithm can be one off near powers of ten.
    while 10**exponent > n:
        exponent -= 1
    while 10 ** (exponent + 1) <= n:
        exponent += 1
    lead = n // 10 ** (exponent - 2)
    return f"about {lead // 100}.{lead % 100:02d}e{exponent}"
