"""Safety limits: the shipped defaults, tightened or loosened by a lab's file.

Limits come from a data file (``data/safety_limits.yaml``), never from code.
A lab file lists only what it changes; loosening any limit needs a written
justification, which is copied into every session it affects.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path

from ..language.errors import Problem, ProtocolError
from ..language.fields import FieldReader, boolean, finite_number, positive
from ..language.units import UnitError
from ..language.yamlpos import load_yaml_file

DEFAULT_LIMITS = files("stimtrain.orchestrator") / "data" / "safety_limits.yaml"


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Safety limits read from a limits file (see ``data/safety_limits.yaml``)."""

    intensities_pct_mt: tuple[float, ...]
    table: dict[float, tuple[float, ...]]
    stricter_margin: bool
    stricter_margin_factor: float
    min_inter_train_interval_s: float
    inter_train_rule_from_pct_mt: float
    max_rtms_frequency_hz: float
    max_rtms_intensity_pct_mt: float
    allow_rtms_without_threshold: bool
    rtms_intensity_cap_pct_mt: float | None
    single_pulse_max_pct_mt: float | None
    theta_burst_max_pct_rmt: float | None
    theta_burst_max_pct_amt: float | None
    max_pulses_per_session: int | None
    max_pulses_per_day: int | None
    source: str
    justifications: tuple[str, ...] = ()

    def max_train_duration(self, frequency_hz: float, pct_mt: float) -> float | None:
        """Look up the longest safe train, rounding frequency and intensity *up*.

        Returns None when the frequency or intensity is beyond the table.
        """
        rows = sorted(self.table)
        row = next((f for f in rows if f >= frequency_hz - 1e-9), None)
        col = next(
            (i for i, x in enumerate(self.intensities_pct_mt) if x >= pct_mt - 1e-9),
            None,
        )
        if row is None or col is None:
            return None
        return self.table[row][col]


_OPTIONAL_NUMBERS = (
    "rtms_intensity_cap_pct_mt",
    "single_pulse_max_pct_mt",
    "theta_burst_max_pct_rmt",
    "theta_burst_max_pct_amt",
    "max_pulses_per_session",
    "max_pulses_per_day",
)
_NUMBERS = (
    "stricter_margin_factor",
    "min_inter_train_interval_s",
    "inter_train_rule_from_pct_mt",
    "max_rtms_frequency_hz",
    "max_rtms_intensity_pct_mt",
)


def _number(value: object) -> float:
    # Finite: a cap of .inf or .nan would pass every comparison unnoticed.
    return finite_number(value)


#: How each limit loosens: "max" caps loosen upwards (None = no cap is the
#: loosest), "min" limits loosen downwards, flags loosen when switched on.
_DIRECTION = {
    **{k: "max" for k in _OPTIONAL_NUMBERS},
    "stricter_margin_factor": "max",
    "max_rtms_frequency_hz": "max",
    "max_rtms_intensity_pct_mt": "max",
    "inter_train_rule_from_pct_mt": "max",
    "min_inter_train_interval_s": "min",
    "allow_rtms_without_threshold": "on",
    "stricter_margin": "off",
}


def _read_limit_values(doc, r: FieldReader, *, partial: bool) -> dict:
    """Read the fields present in a limits file (all of them unless partial)."""
    top = r.mapping(doc.data, ()) or {}
    r.known(
        top,
        (),
        (
            *_NUMBERS,
            *_OPTIONAL_NUMBERS,
            "stricter_margin",
            "allow_rtms_without_threshold",
            "train_duration_table",
            "justifications",
        ),
        "a limits file",
    )
    values: dict = {}

    def keep(key: str, value: object, n_problems: int) -> None:
        # A value refused (None) is left out: comparing it with the default
        # would crash, or pass it as "no cap".
        if len(r.problems) == n_problems:
            values[key] = value

    for key in _NUMBERS:
        if key in top or not partial:
            n = len(r.problems)
            keep(key, r.get(top, (), key, _number, required=True, check=positive), n)
    for key in _OPTIONAL_NUMBERS:
        if key not in top:
            if not partial:
                r.fail((key,), "is required (null for no cap)", "nothing")
            continue
        value = top[key]
        n = len(r.problems)
        keep(
            key,
            None if value is None else r.get(top, (), key, _number, check=positive),
            n,
        )
    for key in ("stricter_margin", "allow_rtms_without_threshold"):
        if key in top or not partial:
            n = len(r.problems)
            keep(key, r.get(top, (), key, boolean, required=True), n)
    if "train_duration_table" in top or not partial:
        cols, table = _read_table(r, top)
        values["intensities_pct_mt"] = cols
        values["table"] = table
    return values


def _read_table(r: FieldReader, top: dict):
    table = r.mapping(top.get("train_duration_table"), ("train_duration_table",)) or {}
    cols = table.get("intensities_pct_mt")
    rows = table.get("max_train_s")
    tpath = ("train_duration_table",)
    if not isinstance(cols, list) or not cols or not _increasing(cols):
        r.fail((*tpath, "intensities_pct_mt"), "must be an increasing list", cols)
        cols = []
    parsed: dict[float, tuple[float, ...]] = {}
    if not isinstance(rows, dict) or not rows:
        r.fail((*tpath, "max_train_s"), "must map frequency (Hz) to durations", rows)
    else:
        for freq, row in rows.items():
            rpath = (*tpath, "max_train_s", freq)
            hz = _positive_finite(freq)
            if hz is None:
                r.fail(rpath, "must be a frequency in Hz (a positive number)", freq)
                continue
            ok = isinstance(row, list) and len(row) == len(cols)
            if not ok or not all(_positive_finite(v) for v in row):
                r.fail(rpath, f"must list {len(cols)} positive durations", row)
                continue
            parsed[hz] = tuple(float(v) for v in row)
    return tuple(float(c) for c in cols), parsed


def _positive_finite(value: object) -> float | None:
    """``value`` as a positive finite float (keys arrive as text), else None."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    try:
        number = finite_number(value)
    except UnitError:
        return None
    return number if number > 0 else None


def _increasing(values: list) -> bool:
    """Whether ``values`` are finite numbers in increasing order."""
    try:
        numbers = [finite_number(v) for v in values]
    except UnitError:
        return False
    return numbers == sorted(numbers)


def _looser(key: str, default, value) -> bool:
    direction = _DIRECTION[key]
    if direction == "on":
        return bool(value) and not default
    if direction == "off":
        return not value and bool(default)
    if direction == "max":
        if value is None:
            return default is not None
        return default is not None and value > default + 1e-12
    return value < default - 1e-12


def _table_looser(base: Limits, cols, table) -> bool:
    """A lab table is looser if it allows a longer train anywhere."""
    trial = Limits(**{**base.__dict__, "intensities_pct_mt": cols, "table": table})
    probes_f = sorted({*base.table, *table})
    probes_i = sorted({*base.intensities_pct_mt, *cols})
    for f in probes_f:
        for i in probes_i:
            new, old = trial.max_train_duration(f, i), base.max_train_duration(f, i)
            if new is not None and (old is None or new > old + 1e-12):
                return True
    return False


def load_limits(path: str | Path | None = None) -> Limits:
    """Load the safety limits: the shipped defaults, tightened or loosened by a lab.

    Parameters
    ----------
    path : str | Path | None
        A lab limits file. It lists only the limits it changes (a complete
        copy of the default file works too). A limit may be tightened freely;
        loosening one needs a written justification under
        ``justifications: {field: "why, who approved, when"}``, which is
        copied into the plan and journal of every session it affects.

    Raises
    ------
    ProtocolError
        When a file has problems (unknown or missing field, table of the
        wrong shape, a loosened limit without a justification).
    """
    doc = load_yaml_file(DEFAULT_LIMITS)
    problems: list[Problem] = []
    r = FieldReader(doc, problems)
    values = _read_limit_values(doc, r, partial=False)
    if problems:
        raise ProtocolError(problems)
    base = Limits(
        source=doc.file,
        **{k: v for k, v in values.items() if k not in _OPTIONAL_NUMBERS},
        **{k: values[k] for k in _OPTIONAL_NUMBERS},
    )
    if path is None:
        return _with_int_caps(base)
    lab = load_yaml_file(path)
    r = FieldReader(lab, problems)
    changes = _read_limit_values(lab, r, partial=True)
    top = lab.data if isinstance(lab.data, dict) else {}
    notes = r.mapping(top.get("justifications", {}) or {}, ("justifications",)) or {}
    for key in notes:
        if not isinstance(notes[key], str) or len(notes[key].strip()) < 20:
            r.fail(
                ("justifications", key),
                "must be a written justification (at least 20 characters)",
                notes[key],
            )
    justified: list[str] = []
    for key, value in changes.items():
        if key == "intensities_pct_mt":
            continue
        if key == "table":
            loose = _table_looser(base, changes["intensities_pct_mt"], value)
            key = "train_duration_table"
        else:
            loose = _looser(key, getattr(base, key), value)
        if not loose:
            continue
        if key not in notes:
            r.fail(
                (key,),
                "loosens a default safety limit; add a written justification under "
                f"justifications.{key}",
                top.get(key) if key != "train_duration_table" else "a longer train",
            )
        else:
            justified.append(f"{key}: {notes[key].strip()}")
    for key in notes:
        if key not in changes and not (
            key == "train_duration_table" and "table" in changes
        ):
            r.fail(
                ("justifications", key),
                "justifies a limit the file does not change",
                key,
            )
    if problems:
        raise ProtocolError(problems)
    merged = {**base.__dict__, **changes, "source": lab.file}
    merged["justifications"] = tuple(justified)
    return _with_int_caps(Limits(**merged))


def _with_int_caps(limits: Limits) -> Limits:
    return replace(
        limits,
        max_pulses_per_session=_as_int(limits.max_pulses_per_session),
        max_pulses_per_day=_as_int(limits.max_pulses_per_day),
    )


def _as_int(value: float | None) -> int | None:
    return None if value is None else int(value)
