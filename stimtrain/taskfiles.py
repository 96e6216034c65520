"""The task trials files: their columns and names, read by every room.

The task runner writes one trials TSV per task block; the session names it;
the analysis reads it back. The columns every file starts with and the file
name's pattern are here, in the shared layer, so that no room imports another
for them.
"""

from __future__ import annotations

import re

#: Columns every trials TSV starts with; task extras follow.
TSV_COLUMNS = (
    "trial",
    "condition",
    "stimulus",
    "correct_key",
    "onset",
    "key",
    "rt",
    "correct",
)

#: ``…block-<bb>_task-<name>_trials.tsv``: the 1-based block and the task.
TRIALS_FILE = re.compile(r"block-(\d+)_task-(.+)_trials\.tsv\Z")


def trials_file_name(block: int, task: str) -> str:
    """The file name of block ``block``'s (0-based) trials, without the prefix."""
    return f"block-{block + 1:02d}_task-{task}_trials.tsv"
