"""The task registry: task classes by name, built-in and from entry points.

Every :class:`~stimtrain.tasks.api.Task` subclass with a ``name`` adds itself
to :data:`TASKS` when it is defined (``Task.__init_subclass__`` calls
:func:`_register`). Tasks of other packages register under the entry-point
group ``stimtrain.tasks`` (``name = "package.module:TaskClass"``);
:func:`get_task` finds them by name and loads them on first use.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .api import Task

#: Task name -> task class. Filled as task classes are defined
#: (:meth:`Task.__init_subclass__`); importing :mod:`stimtrain.tasks` imports
#: every task module of the package, so it is complete after that import.
TASKS: dict[str, type[Task]] = {}


def _register(cls: type[Task]) -> None:
    """Add a task class to :data:`TASKS` under its ``name``."""
    if not cls.name:
        return  # an abstract intermediate class
    _register_as(cls.name, cls)


def _register_as(name: str, cls: type[Task]) -> None:
    other = TASKS.get(name)
    if other is not None and other.__qualname__ != cls.__qualname__:
        raise RuntimeError(
            f"two tasks are named {name!r}: {other.__module__}."
            f"{other.__qualname__} and {cls.__module__}.{cls.__qualname__}"
        )
    TASKS[name] = cls


#: Modules of this package that hold the built-in tasks.
BUILTIN_TASK_MODULES = (
    "flanker",
    "stroop",
    "gonogo",
    "stopsignal",
    "nback",
    "switching",
)
#: Entry-point group under which other packages register tasks.
ENTRY_POINT_GROUP = "stimtrain.tasks"


def import_task_modules() -> None:
    """Import the built-in task modules, so that :data:`TASKS` holds them."""
    package = __name__.rpartition(".")[0]
    for module in BUILTIN_TASK_MODULES:
        importlib.import_module(f"{package}.{module}")


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """Return the installed task entry points by name."""
    return {
        ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    }


def _load_entry_point(ep: importlib.metadata.EntryPoint) -> type[Task]:
    """Load a task class from an entry point and register it under its name."""
    # Imported on use, not at the top: api imports this module when it loads
    # (Task.__init_subclass__ registers through _register), so a top-level
    # import of api here would be circular.
    from .api import Task

    where = f"entry point {ep.name!r} = {ep.value!r} (group {ENTRY_POINT_GROUP!r})"
    try:
        cls = ep.load()
    except Exception as exc:
        raise KeyError(f"{where} could not be loaded: {exc!r}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise KeyError(
            f"{where} must name a subclass of stimtrain.tasks.Task, got {cls!r}"
        )
    # The class registered itself under cls.name on definition; the entry
    # point's name is how protocol files call it, so it must be known too.
    if ep.name != cls.name:
        _register_as(ep.name, cls)
    return cls


def task_names() -> list[str]:
    """Return the names of every available task, built-in and from entry points.

    Returns
    -------
    names : list of str
        Sorted.
    """
    return sorted(set(TASKS) | set(_entry_points()))


def get_task(name: str) -> Task:
    """Return a new instance of the task called ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`TASKS`, or the name of an entry point in the group
        ``stimtrain.tasks`` (loaded on first use).

    Returns
    -------
    task : Task

    Raises
    ------
    KeyError
        If there is no such task (the message lists the known ones), or its
        entry point does not load a :class:`Task` subclass.
    """
    if not isinstance(name, str):
        raise KeyError(f"task name must be a string, got {name!r}")
    cls = TASKS.get(name)
    if cls is None:
        ep = _entry_points().get(name)
        if ep is None:
            known = ", ".join(task_names()) or "(none)"
            raise KeyError(f"unknown task {name!r}; known tasks: {known}")
        cls = _load_entry_point(ep)
    return cls()
