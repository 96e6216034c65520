"""Write recorded sessions as a BIDS dataset with mne-bids, and validate it.

Each run's EEG (and EMG, as channels of type EMG) is written as BrainVision;
every stimtrain marker becomes a row of ``events.tsv`` whose columns are the
marker fields (block, pulse, pattern, intensity, unit, power, scheduled,
trial, condition, …). BIDS has no finished TMS extension (BEP037 is a draft),
so the stimulation parameters also go into a ``*_tms.json`` sidecar named as
in the draft and listed in ``.bidsignore``. The session folder's own files
(XDF, plan, journal, trials TSVs) are copied to ``sourcedata/``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import mne
from mne.utils import logger, verbose

from .session import InputError, find_runs, session_labels
from .xdf import read_raw_xdf

if TYPE_CHECKING:  # pragma: no cover
    from mne_bids import BIDSPath

__all__ = ["write_bids", "write_bids_run", "validate_bids"]

#: Descriptions of the marker fields that become events.tsv columns.
COLUMN_DESCRIPTIONS = {
    "event": "stimtrain marker event (see stimtrain/vocabulary.py)",
    "block": "0-based block index of the protocol",
    "type": "block type (stimulate, task, rest, instructions)",
    "label": "block label from the protocol",
    "pulse": "pulse number within the block",
    "pattern": "stimulation pattern (single, paired, rTMS, iTBS, cTBS, ...)",
    "intensity": "intensity as written in the protocol",
    "unit": "unit of intensity (%MSO, %RMT, %AMT)",
    "power": "stimulator output sent to the device (%MSO)",
    "scheduled": "LSL time (s) the pulse was planned for",
    "lsl_time": "LSL time (s) of the marker, after clock synchronisation",
    "task": "task name",
    "trial": "0-based trial index within the block",
    "condition": "task condition",
    "key": "response key",
    "rt": "response time (s)",
    "correct": "1 if the response was correct",
}
_TMS_FIELDS = ("pattern", "intensity", "unit", "power")


def _tms_sidecar(raw: mne.io.BaseRaw) -> dict:
    """Stimulation parameters per block from the pulse annotations."""
    pulses = [
        dict(e or {})
        for d, e in zip(
            raw.annotations.description, raw.annotations.extras, strict=True
        )
        if d == "pulse"
    ]
    blocks: dict = {}
    for p in pulses:
        b = blocks.setdefault(
            p.get("block"), {"Block": p.get("block"), "PulseCount": 0}
        )
        b["PulseCount"] += 1
        for key in _TMS_FIELDS:
            if key in p and p[key] is not None:
                name = {
                    "pattern": "Pattern",
                    "intensity": "Intensity",
                    "unit": "IntensityUnit",
                    "power": "OutputPercentMSO",
                }[key]
                values = b.setdefault(name, [])
                if p[key] not in values:
                    values.append(p[key])
    for b in blocks.values():
        for key, values in list(b.items()):
            if isinstance(values, list) and len(values) == 1:
                b[key] = values[0]
    return {
        "Description": "TMS stimulation parameters (stimtrain; BEP037 is a draft, "
        "so this sidecar is listed in .bidsignore). Per-pulse values are "
        "in the events.tsv columns.",
        "PulseCount": len(pulses),
        "Blocks": [blocks[k] for k in sorted(blocks, key=lambda v: (v is None, v))],
    }


@verbose
def write_bids_run(
    raw: mne.io.BaseRaw,
    root: str | PathLike,
    *,
    participant: str,
    session: str | None = None,
    run: int | None = None,
    task: str = "stimtrain",
    line_freq: float = 50.0,
    overwrite: bool = False,
    verbose=None,
) -> BIDSPath:
    """Write one Raw (EEG + EMG + marker annotations) into a BIDS dataset.

    Parameters
    ----------
    raw : instance of Raw
        As from :func:`read_raw_xdf`, in volts, with marker annotations.
    root : path-like
        The BIDS root.
    participant, session : str
        BIDS labels (letters and digits).
    run : int | None
        Run number.
    task : str
        BIDS task label.
    line_freq : float
        Power-line frequency (Hz) for the sidecar.
    overwrite : bool
        Replace an existing run (same participant, session, task and run);
        without it an existing run is refused with :class:`FileExistsError`.
    %(verbose)s

    Returns
    -------
    bids_path : mne_bids.BIDSPath
        The written recording.
    """
    from mne_bids import BIDSPath, write_raw_bids

    raw = raw.copy()
    raw.info["line_freq"] = line_freq
    bids_path = BIDSPath(
        subject=participant,
        session=session,
        # Zero-padded like the session folder's file names (run-01).
        run=None if run is None else f"{int(run):02d}",
        task=task,
        datatype="eeg",
        root=Path(root),
    )
    _refuse_existing(bids_path, overwrite)
    # Marker fields go to events.tsv as columns; BIDS wants one value per
    # cell, so the decoded JSON is already flat (see xdf._flatten_extras).
    descriptions = {
        key: COLUMN_DESCRIPTIONS.get(key, f"stimtrain marker field {key!r}")
        for extras in raw.annotations.extras
        for key in (extras or {})
    }
    write_raw_bids(
        raw,
        bids_path,
        format="BrainVision",
        allow_preload=True,
        overwrite=overwrite,
        extra_columns_descriptions=descriptions,
        verbose=verbose,
    )
    # BIDSPath refuses the draft's "tms" suffix, so the name is built here.
    eeg_file = bids_path.copy().update(suffix="eeg", extension=".json").fpath
    sidecar = eeg_file.with_name(eeg_file.name.replace("_eeg.json", "_tms.json"))
    sidecar.write_text(json.dumps(_tms_sidecar(raw), indent=2) + "\n")
    ignore = Path(root) / ".bidsignore"
    lines = ignore.read_text().splitlines() if ignore.is_file() else []
    if "*_tms.json" not in lines:
        ignore.write_text("\n".join([*lines, "*_tms.json"]) + "\n")
    logger.info(f"Wrote {bids_path.fpath}")
    return bids_path


def _bids_path(root, participant, session, run, task):
    from mne_bids import BIDSPath

    return BIDSPath(
        subject=participant,
        session=session,
        run=None if run is None else f"{int(run):02d}",
        task=task,
        datatype="eeg",
        root=Path(root),
    )


def _refuse_existing(bids_path, overwrite: bool) -> None:
    """Refuse to replace a recording already in the dataset (unless asked)."""
    if overwrite:
        return
    existing = bids_path.copy().update(suffix="eeg", extension=".vhdr").fpath
    if existing.exists():
        raise FileExistsError(
            f"{existing} already exists (the same participant, session and run); "
            "give --overwrite (overwrite=True) to replace it"
        )


@verbose
def write_bids(
    session_dirs: list[str | PathLike] | str | PathLike,
    root: str | PathLike,
    *,
    task: str = "stimtrain",
    line_freq: float = 50.0,
    sourcedata: bool = True,
    overwrite: bool = False,
    verbose=None,
) -> Path:
    """Write stimtrain session folders as a BIDS dataset.

    Parameters
    ----------
    session_dirs : path-like | list of path-like
        Session folders (``<data>/sub-<id>/ses-<n>/``); every run recorded in
        each is written.
    root : path-like
        The BIDS root (created if needed).
    task : str
        BIDS task label of the recordings.
    line_freq : float
        Power-line frequency (Hz).
    sourcedata : bool
        Copy each session folder's files to ``sourcedata/sub-<id>/ses-<n>/``.
    overwrite : bool
        Replace runs already in the dataset. Without it, a run whose
        participant, session and run number are already in the dataset is
        refused before anything is written (:class:`FileExistsError`).
    %(verbose)s

    Returns
    -------
    root : Path
        The dataset root, with ``dataset_description.json``,
        ``participants.tsv``, and per run ``_eeg.vhdr/.vmrk/.eeg``,
        ``_eeg.json``, ``_channels.tsv``, ``_electrodes.tsv`` (when positions
        are known), ``_events.tsv`` + ``.json`` and ``_tms.json``.
    """
    if isinstance(session_dirs, str | PathLike):
        session_dirs = [session_dirs]
    if not session_dirs:
        raise ValueError(
            "session_dirs must name at least one session folder (got none)"
        )
    root = Path(root)
    plan = []
    for folder in map(Path, session_dirs):
        # Every folder is checked before anything is written.
        if not folder.is_dir():
            raise InputError(folder, "no such session folder")
        try:
            participant, session = session_labels(folder)
        except ValueError as err:
            raise InputError(folder, err) from err
        runs = find_runs(folder)
        if not runs:
            raise InputError(
                folder, "no *_run-<rr>_recording.xdf: not a session folder"
            )
        for run in runs:
            _refuse_existing(
                _bids_path(root, participant, session, run, task), overwrite
            )
        plan.append((folder, participant, session, runs))
    for folder, participant, session, runs in plan:
        for run, xdf in runs.items():
            try:
                raw = read_raw_xdf(xdf, verbose=verbose)
            except (OSError, ValueError) as err:
                raise InputError(xdf, err) from err
            write_bids_run(
                raw,
                root,
                participant=participant,
                session=session,
                run=run,
                task=task,
                line_freq=line_freq,
                overwrite=overwrite,
                verbose=verbose,
            )
        if sourcedata:
            dest = root / "sourcedata" / f"sub-{participant}" / f"ses-{session}"
            shutil.copytree(folder, dest, dirs_exist_ok=True)
    return root


def validate_bids(
    root: str | PathLike, *, timeout: float = 300.0
) -> tuple[list[dict], list[dict]]:
    """Run the official BIDS validator (``bids-validator-deno``) on a dataset.

    Parameters
    ----------
    root : path-like
        The dataset.
    timeout : float
        Seconds before giving up.

    Returns
    -------
    errors, warnings : list of dict
        The validator's issues (``code``, ``location``, ``issueMessage`` …).

    Raises
    ------
    FileNotFoundError
        If the validator is not installed (``pip install bids-validator-deno``).
    """
    exe = Path(sys.executable).with_name("bids-validator-deno")
    if not exe.is_file():
        found = shutil.which("bids-validator-deno")
        if found is None:
            raise FileNotFoundError(
                "bids-validator-deno is not installed (pip install bids-validator-deno)"
            )
        exe = Path(found)
    proc = subprocess.run(
        [str(exe), str(root), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as err:
        raise RuntimeError(
            f"the BIDS validator gave no JSON (exit {proc.returncode}): "
            f"{proc.stderr[-2000:]}"
        ) from err
    issues = report.get("issues", {}).get("issues", [])
    errors = [i for i in issues if i.get("severity") == "error"]
    warnings = [i for i in issues if i.get("severity") == "warning"]
    return errors, warnings
