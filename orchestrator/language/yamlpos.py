"""YAML loading that remembers where every value was written.

PyYAML's composer gives nodes with marks; we build plain Python values from
them and keep a map from each value's path (``("blocks", 2, "intensity")``) to
its 1-based line and column, so that every later check can point at the text.

Loading is bounded before anything is expanded (see :mod:`.bounds`): the file's
size and kind are checked before it is read, nesting and the number of nodes
while composing, and the values built with every alias expanded while
building, so no file can make the loader hang, exhaust memory or overflow the
stack.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .bounds import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, MAX_VALUES
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


_MERGE = "tag:yaml.org,2002:merge"
_VALUE = "tag:yaml.org,2002:value"


class _Alias(yaml.Node):
    """An alias as written (``*name``): where it is, and the node it names.

    PyYAML's composer hands back the anchored node itself, losing where the
    alias was written; keeping it lets a bound name the alias that crossed it.
    """

    id = "alias"

    def __init__(self, anchor: str, target: yaml.Node, start_mark, end_mark):
        super().__init__(target.tag, None, start_mark, end_mark)
        self.anchor = anchor
        self.target = target


class _Refused(Exception):
    """A bound passed while composing, with the mark where it was passed."""

    def __init__(self, mark, rule: str, value: object):
        super().__init__(rule)
        self.mark = mark
        self.rule = rule
        self.value = value


class _Builder(yaml.SafeLoader):
    """A SafeLoader whose composer bounds nesting and nodes, and keeps aliases.

    PyYAML's composer recurses once per level of nesting; refusing the
    65th level as it starts keeps a 100,000-deep ``[[[…]]]`` from reaching
    Python's recursion limit, and counting nodes keeps a file of tiny values
    from taking seconds and hundreds of MiB to compose.
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self._levels = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        event = self.peek_event()
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Refused(
                event.start_mark,
                f"must hold at most {MAX_NODES} values",
                f"more than {MAX_NODES}",
            )
        if isinstance(event, yaml.AliasEvent):
            self.get_event()
            if event.anchor not in self.anchors:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"found undefined alias {event.anchor!r}",
                    event.start_mark,
                )
            target = self.anchors[event.anchor]
            return _Alias(event.anchor, target, event.start_mark, event.end_mark)
        if not isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            return super().compose_node(parent, index)
        if self._levels >= MAX_DEPTH:
            raise _Refused(
                event.start_mark,
                f"must nest lists and mappings at most {MAX_DEPTH} levels deep",
                f"{self._levels + 1} levels",
            )
        self._levels += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._levels -= 1


def _position(mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def _unalias(node: yaml.Node, path: Path_, blame):
    """The node an alias names, and what to blame (the outermost alias)."""
    if not isinstance(node, _Alias):
        return node, blame
    return node.target, blame or (path, node)


def _kind(node: yaml.Node) -> str:
    return "a mapping" if isinstance(node, yaml.MappingNode) else "a list"


class _Expander:
    """Builds plain values from composed nodes, expanding aliases within bounds.

    Every value built counts, an alias's whole subtree each time it is
    visited, as do the pairs a merge key (``<<: *name``) copies in; the build
    stops as soon as :data:`MAX_VALUES` is passed, at the alias written in
    the file that was being expanded.
    """

    def __init__(self, loader: _Builder, doc: LocatedDocument):
        self.loader = loader
        self.doc = doc
        self.count = 0
        self.open: set[int] = set()  # nodes being built (an alias to one loops)

    def refuse(self, path: Path_, mark, rule: str, value: object) -> ProtocolError:
        line, col = _position(mark)
        problem = Problem(self.doc.file, line, col, format_path(path), rule, value)
        return ProtocolError([problem])

    def too_many(self, path: Path_, node: yaml.Node, blame) -> ProtocolError:
        at, value = blame or (path, node)
        shown = f"*{value.anchor}" if isinstance(value, _Alias) else "a value"
        return self.refuse(
            at,
            value.start_mark,
            f"must not expand the file to more than {MAX_VALUES} values "
            "(each alias repeats all it names)",
            shown,
        )

    def build(self, node: yaml.Node, path: Path_, depth: int, blame=None) -> Any:
        """Build ``node`` at ``path``; ``blame`` is the outermost alias expanding."""
        if isinstance(node, _Alias):
            if id(node.target) in self.open:
                raise self.refuse(
                    path,
                    node.start_mark,
                    "must not name a value that contains it",
                    f"*{node.anchor}",
                )
            blame = blame or (path, node)
            node = node.target
        self.count += 1
        if self.count > MAX_VALUES:
            raise self.too_many(path, node, blame)
        self.doc.positions[path] = _position(node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if depth >= MAX_DEPTH:
            at, mark = blame if blame else (path, node)
            shown = f"*{mark.anchor}" if isinstance(mark, _Alias) else f"{depth + 1}"
            raise self.refuse(
                at,
                mark.start_mark,
                f"must nest lists and mappings at most {MAX_DEPTH} levels deep "
                "(aliases included)",
                shown,
            )
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [
                    self.build(item, (*path, i), depth + 1, blame)
                    for i, item in enumerate(node.value)
                ]
            return self.mapping(node, path, depth, blame)
        finally:
            self.open.discard(id(node))

    def scalar(self, node: yaml.ScalarNode, path: Path_) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, OverflowError) as exc:
            text = node.value
            shown = (
                text if len(text) <= 40 else f"{text[:20]}… ({len(text)} characters)"
            )
            if node.tag == "tag:yaml.org,2002:int":
                rule = "must be a whole number of at most 4300 digits"
            else:
                rule = f"cannot be read as {node.tag.rsplit(':', 1)[-1]}: {exc}"
            raise self.refuse(path, node.start_mark, rule, shown) from None

    def mapping(self, node: yaml.MappingNode, path: Path_, depth: int, blame) -> dict:
        out: dict[Any, Any] = {}
        for key_node, value_node, via in self.pairs(node, path, (), blame):
            key_node = key_node.target if isinstance(key_node, _Alias) else key_node
            if not isinstance(key_node, yaml.ScalarNode):
                raise ProtocolError(
                    [
                        self.doc.problem(
                            path, "keys must be plain names", _kind(key_node)
                        )
                    ]
                )
            if key_node.tag == _VALUE:
                key: Any = key_node.value
            else:
                key = self.scalar(key_node, path)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise ProtocolError(
                    [self.doc.problem(path, "keys must be plain names", str(key))]
                )
            key = str(key)
            if key in out:
                raise self.refuse(
                    (*path, key),
                    key_node.start_mark,
                    "each key may appear only once in a mapping",
                    key,
                )
            out[key] = self.build(value_node, (*path, key), depth + 1, via)
            # Unknown-field messages point at the name, not at its value.
            self.doc.key_positions[(*path, key)] = _position(key_node.start_mark)
        return out

    def pairs(self, node: yaml.MappingNode, path: Path_, merging: tuple, blame):
        """The pairs of ``node`` with its merge keys resolved, as PyYAML orders them.

        Each pair comes with the alias to blame if building it passes a bound.
        PyYAML flattens merges recursively and without limit (a mapping merged
        into itself recursed forever); this copy is bounded in depth and size.
        """
        if id(node) in merging or len(merging) >= MAX_DEPTH:
            raise self.refuse(
                path,
                node.start_mark,
                "must not merge a mapping into itself",
                "a merge key",
            )
        merging = (*merging, id(node))
        merged: list = []
        own: list = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                own.append((key_node, value_node, blame))
                continue
            via = blame or (
                (path, value_node) if isinstance(value_node, _Alias) else None
            )
            target = value_node.target if isinstance(value_node, _Alias) else value_node
            if isinstance(target, yaml.MappingNode):
                merged.extend(self.pairs(target, path, merging, via))
            elif isinstance(target, yaml.SequenceNode):
                groups = []
                for sub in target.value:
                    sub_node, sub_via = _unalias(sub, path, via)
                    if not isinstance(sub_node, yaml.MappingNode):
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping",
                            node.start_mark,
                            f"expected a mapping for merging, but found {sub_node.id}",
                            sub.start_mark,
                        )
                    groups.append(self.pairs(sub_node, path, merging, sub_via))
                    gathered = sum(len(group) for group in groups)
                    if self.count + len(merged) + gathered > MAX_VALUES:
                        raise self.too_many(path, node, sub_via)
                for group in reversed(groups):
                    merged.extend(group)
            else:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "expected a mapping or list of mappings for merging, "
                    f"but found {target.id}",
                    value_node.start_mark,
                )
            if self.count + len(merged) > MAX_VALUES:
                raise self.too_many(path, node, via)
        return merged + own


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
        doc.data = {} if node is None else _Expander(loader, doc).build(node, (), 0)
    except _Refused as exc:
        line, col = _position(exc.mark)
        raise ProtocolError(
            [Problem(file, line, col, "(document)", exc.rule, exc.value)]
        ) from None
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


def _file_problem(path: Path, rule: str, value: object) -> ProtocolError:
    return ProtocolError([Problem(str(path), 0, 0, "(file)", rule, value)])


_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_bounded_text(path: str | Path) -> str:
    """Read a regular UTF-8 text file of at most :data:`MAX_FILE_BYTES` bytes.

    The file is opened without blocking (a FIFO would otherwise wait for a
    writer) and checked to be a regular file before a byte is read; at most
    one byte more than the bound is read, so a file that grows meanwhile, or
    lies about its size, is refused too. Line ends are translated the way
    Python's text mode does.

    Raises
    ------
    ProtocolError
        A ``(file)`` problem: unreadable, not a regular file, too large, or
        not UTF-8.
    """
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _file_problem(path, "must be a readable file", exc.strerror) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise _file_problem(
                path, "must be a readable file", os.strerror(errno.EISDIR)
            )
        if not stat.S_ISREG(info.st_mode):
            kind = next((k for test, k in _KINDS if test(info.st_mode)), "not a file")
            raise _file_problem(path, "must be a regular file", kind)
        limit = f"must be at most {MAX_FILE_BYTES} bytes ({MAX_FILE_BYTES >> 20} MiB)"
        if info.st_size > MAX_FILE_BYTES:
            raise _file_problem(path, limit, f"{info.st_size} bytes")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise _file_problem(path, limit, f"more than {MAX_FILE_BYTES} bytes")
    except OSError as exc:
        raise _file_problem(path, "must be a readable file", exc.strerror) from None
    finally:
        os.close(fd)
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise _file_problem(path, "must be UTF-8 text", "binary data") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def load_yaml_file(path: str | Path) -> LocatedDocument:
    """Read and parse a YAML file, keeping positions; see :func:`load_yaml_text`.

    The file is read with :func:`read_bounded_text` (a regular file of at most
    :data:`~.bounds.MAX_FILE_BYTES` bytes).
    """
    return load_yaml_text(read_bounded_text(path), str(Path(path)))
