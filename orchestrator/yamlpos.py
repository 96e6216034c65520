"""YAML loading that remembers where every value was written.

PyYAML's composer gives nodes with marks; we build plain Python values from
them and keep a map from each value's path (``("blocks", 2, "intensity")``) to
its 1-based line and column, so that every later check can point at the text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Problem, ProtocolError

Path_ = tuple[Any, ...]


@dataclass
class LocatedDocument:
    """A YAML document as plain values plus the position of each value.

    Attributes
    ----------
    data : object
        The document (dicts, lists, scalars).
    positions : dict
        Path tuple -> (line, col), both 1-based.
    file : str
        The file name used in messages.
    text : str
        The exact text that was loaded (for hashing and copying).
    """

    data: Any
    positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    file: str = "<string>"
    text: str = ""
    key_positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: Path_) -> tuple[int, int]:
        """Return the position of ``path``, or of its nearest written parent."""
        path = tuple(path)
        while path:
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return self.positions.get((), (1, 1))

    def problem(
        self, path: Path_, rule: str, value: object, *, at_key: bool = False
    ) -> Problem:
        """Make a :class:`Problem` located at ``path`` (or at its key's name)."""
        path = tuple(path)
        if at_key and path in self.key_positions:
            line, col = self.key_positions[path]
        else:
            line, col = self.where(path)
        return Problem(self.file, line, col, format_path(path), rule, value)


def format_path(path: Path_) -> str:
    """Render a path tuple as ``blocks[2].intensity``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(document)"


class _Builder(yaml.SafeLoader):
    pass


def _build(loader: _Builder, node: yaml.Node, path: Path_, doc: LocatedDocument):
    doc.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise ProtocolError(
                    [doc.problem(path, "keys must be plain names", str(key))]
                )
            key = str(key)
            if key in out:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                raise ProtocolError(
                    [
                        Problem(
                            doc.file,
                            line,
                            col,
                            format_path((*path, key)),
                            "each key may appear only once in a mapping",
                            key,
                        )
                    ]
                )
            out[key] = _build(loader, value_node, (*path, key), doc)
            # Unknown-field messages point at the name, not at its value.
            doc.key_positions[(*path, key)] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, item, (*path, i), doc) for i, item in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)


def load_yaml_text(text: str, file: str = "<string>") -> LocatedDocument:
    """Parse YAML text into a :class:`LocatedDocument`.

    Raises
    ------
    ProtocolError
        On a YAML syntax error, located where the parser stopped.
    """
    doc = LocatedDocument(None, {}, file, text, {})
    loader = None
    try:
        # The reader refuses control characters already in the constructor.
        loader = _Builder(text)
        node = loader.get_single_node()
        doc.data = {} if node is None else _build(loader, node, (), doc)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        rule = f"is not valid YAML: {exc.problem or exc.context}"
        raise ProtocolError(
            [Problem(file, line, col, "(syntax)", rule, "text")]
        ) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        rule = f"must be printable text: character #x{exc.character:04x} is not allowed"
        raise ProtocolError(
            [Problem(file, line, col, "(syntax)", rule, "text")]
        ) from None
    except yaml.YAMLError as exc:
        raise ProtocolError(
            [Problem(file, 1, 1, "(syntax)", str(exc), "text")]
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    return doc


def load_yaml_file(path: str | Path) -> LocatedDocument:
    """Read and parse a YAML file, keeping positions; see :func:`load_yaml_text`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProtocolError(
            [
                Problem(
                    str(path), 0, 0, "(file)", "must be a readable file", exc.strerror
                )
            ]
        ) from None
    except UnicodeDecodeError:
        raise ProtocolError(
            [Problem(str(path), 0, 0, "(file)", "must be UTF-8 text", "binary data")]
        ) from None
    return load_yaml_text(text, str(path))
