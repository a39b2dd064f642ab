"""YAML to plain data with source positions, and problems that say where and what to fix.

The YAML dialect is deliberately narrow: duplicate keys are errors, and YAML 1.1's implicit
timestamps and yes/no/on/off booleans are plain strings, so `on: 2024-01-01` stays text.

A playbook is untrusted input, so loading it has budgets: a size limit, a nesting depth, a bound on what
aliases may expand to; keys are text and values are text, numbers, booleans, lists and mappings. Each breach
is a problem at its place, never an exception.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PathT = tuple[str | int, ...]


_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a playbook, with where it is."""

    file: str
    line: int
    col: int
    message: str
    path: PathT = ()

    def __post_init__(self) -> None:
        # A message quotes the playbook, which can hold anything: one line, printable, of a readable length.
        message = _CONTROL_RE.sub(lambda m: repr(m.group())[1:-1], self.message)
        if len(message) > 1_000:
            message = message[:1_000] + "..."
        object.__setattr__(self, "message", message)

    def __str__(self) -> str:
        where = f" (at {_CONTROL_RE.sub(lambda m: repr(m.group())[1:-1], format_path(self.path))})" if self.path else ""
        return f"{self.file}:{self.line}:{self.col}: {self.message}{where}"


def format_path(path: PathT) -> str:
    """('steps', 2, 'with', 'user_name') -> steps[2].with.user_name"""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class Document:
    """Parsed YAML with a map from each path to its (line, col), 1-based."""

    file: str
    data: Any
    value_pos: dict[PathT, tuple[int, int]] = field(default_factory=dict)
    key_pos: dict[PathT, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: PathT) -> tuple[int, int]:
        """The closest known position: the key if there is one, else the value, else a parent's."""
        probe = tuple(path)
        while True:
            if probe in self.key_pos:
                return self.key_pos[probe]
            if probe in self.value_pos:
                return self.value_pos[probe]
            if not probe:
                return (1, 1)
            probe = probe[:-1]

    def problem(self, path: PathT, message: str, at: PathT | None = None) -> Problem:
        """A problem about `path`, placed at `at` (default: `path` itself) in the source."""
        line, col = self.position(path if at is None else at)
        return Problem(self.file, line, col, message, tuple(path))


_DROPPED = ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
# libyaml's parser where the wheel has it (several times faster), else the pure-Python one.
_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc,valid-type]
    """SafeLoader without YAML 1.1's implicit timestamps and yes/no booleans."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


def _construct_bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    return loader.construct_scalar(node).lower() == "true"


_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL_RE, list("tTfF"))
_Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
# An explicit !!timestamp stays text too: a playbook has no use for datetime objects.
_Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)


MAX_BYTES = 1_000_000  # a playbook is a few kilobytes; this is a hundred times the largest shipped one
MAX_DEPTH = 32  # the deepest shipped playbook nests 8 levels (a JSON Schema input a few more)
MAX_ALIAS_NODES = 1_000  # nodes that aliases and merge keys may copy, in all, per document

_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_STR = "tag:yaml.org,2002:str"
_SCALAR_TAGS = frozenset(
    {_STR, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"}
    | {"tag:yaml.org,2002:timestamp"}
)
# What YAML calls printable (YAML 1.1, 5.1); anything else stops the parser, so it is found first and placed.
_UNPRINTABLE_RE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class YamlError(Exception):
    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


def _line_col(text: str, index: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


def _one_line(text: str, limit: int = 60) -> str:
    """A short, single-line repr of untrusted text for a message."""
    shown = repr(text[:limit])
    return shown + ("..." if len(text) > limit else "")


def parse_yaml(text: str, file: str = "<string>") -> tuple[Document, list[Problem]]:
    """Parse one YAML document. Syntax errors and breached budgets raise YamlError; the rest are problems."""
    if len(text) > MAX_BYTES:
        raise YamlError(Problem(file, 1, 1, f"the text is {len(text)} characters; a playbook is at most {MAX_BYTES}"))
    bad = _UNPRINTABLE_RE.search(text)
    if bad:
        line, col = _line_col(text, bad.start())
        char = ord(bad.group())
        raise YamlError(
            Problem(
                file,
                line,
                col,
                f"control character U+{char:04X} is not allowed in YAML: remove it, or write it as an escape "
                "in a double-quoted string",
            )
        )
    loader = _Loader(text)
    problems: list[Problem] = []
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or "invalid YAML"
        if exc.context:
            what = f"{exc.context}, {what}"
        if exc.context_mark and exc.problem_mark and exc.context_mark.line != exc.problem_mark.line:
            what += f" (it started on line {exc.context_mark.line + 1})"
        raise YamlError(Problem(file, line, col, f"YAML syntax: {' '.join(what.split())}")) from None
    except yaml.YAMLError as exc:
        raise YamlError(Problem(file, 1, 1, f"YAML syntax: {' '.join(str(exc).split())}")) from None
    finally:
        loader.dispose()
    doc = Document(file=file, data=None)
    if node is None:
        return doc, problems
    doc.data = _Builder(loader, doc, problems).build(node, (), 0)
    return doc, problems


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    """Nodes to plain data with positions, within the depth and alias budgets."""

    def __init__(self, loader: _Loader, doc: Document, problems: list[Problem]):
        self.loader = loader
        self.doc = doc
        self.problems = problems
        self.seen: set[int] = set()
        self.open: set[int] = set()  # nodes being built: meeting one again is a recursive alias
        self.copied = 0  # nodes built a second time or more, through an alias or a merge

    def refuse(self, path: PathT, message: str, at: tuple[int, int] | None = None) -> YamlError:
        """A breach of a budget ends loading: the rest of such a document is not worth checking."""
        line, col = at or self.doc.position(path)
        return YamlError(Problem(self.doc.file, line, col, message, path))

    def build(self, node: yaml.Node, path: PathT, depth: int) -> Any:
        key = id(node)
        if key in self.open:
            # placed at the nearest key: the composed document no longer knows where the alias was written
            raise self.refuse(path, "a recursive alias: this value contains itself")
        if key in self.seen:
            self.copied += 1
            if self.copied > MAX_ALIAS_NODES:
                raise self.refuse(path, f"aliases expand to more than {MAX_ALIAS_NODES} values (an alias bomb?)")
        else:
            self.seen.add(key)
            self.doc.value_pos.setdefault(path, _mark(node))
        if depth > MAX_DEPTH:
            raise self.refuse(path, f"nested deeper than {MAX_DEPTH} levels", _mark(node))
        self.open.add(key)
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path, depth)
            if isinstance(node, yaml.SequenceNode):
                if node.tag != _SEQ:
                    return self.bad_tag(node, path)
                return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
            return self.scalar(node, path)
        finally:
            self.open.discard(key)

    def bad_tag(self, node: yaml.Node, path: PathT) -> None:
        line, col = _mark(node)
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        message = f"the tag {_one_line(tag)} is not allowed: a playbook holds text, numbers, booleans, lists and mappings"
        self.problems.append(Problem(self.doc.file, line, col, message, path))

    def scalar(self, node: yaml.Node, path: PathT) -> Any:
        if node.tag == _STR:
            return node.value  # plain text (most of a playbook) skips the constructor's generic machinery
        if node.tag not in _SCALAR_TAGS or not isinstance(node, yaml.ScalarNode):
            return self.bad_tag(node, path)
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, ArithmeticError, LookupError, yaml.YAMLError):  # `!!int` alone fails on value[0]
            line, col = _mark(node)
            kind = node.tag.rsplit(":", 1)[-1]
            if kind == "int" and len(node.value) > 100:
                message = f"a number of {len(node.value)} digits is too long; quote it if it is text"
            else:
                message = f"{_one_line(node.value)} is not a valid {kind}"
            self.problems.append(Problem(self.doc.file, line, col, message, path))
            return None

    def mapping(self, node: yaml.MappingNode, path: PathT, depth: int) -> Any:
        if node.tag != _MAP:
            return self.bad_tag(node, path)
        out: dict[str, Any] = {}
        inherited: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                self.merge(value_node, path, depth, inherited)
                continue
            line, col = _mark(key_node)
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(Problem(self.doc.file, line, col, "a mapping key must be plain text", path))
                continue
            key = self.scalar(key_node, path)
            if not isinstance(key, str):
                if key is not None or key_node.tag == "tag:yaml.org,2002:null":
                    shown = _one_line(key_node.value)
                    message = f"a mapping key must be text: quote {shown} if it is meant"
                    self.problems.append(Problem(self.doc.file, line, col, message, path))
                continue
            child = (*path, key)
            if key in out:
                first = self.doc.key_pos.get(child, (0, 0))[0]
                message = f"duplicate key {_one_line(key)} (first defined on line {first})"
                self.problems.append(Problem(self.doc.file, line, col, message, child))
                continue
            self.doc.key_pos[child] = (line, col)
            out[key] = self.build(value_node, child, depth + 1)
        # YAML's merge keys: explicit keys win over merged ones
        return {**inherited, **out} if inherited else out

    def merge(self, value_node: yaml.Node, path: PathT, depth: int, into: dict[str, Any]) -> None:
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                line, col = _mark(source)
                self.problems.append(Problem(self.doc.file, line, col, "<< merges a mapping or a list of mappings", path))
                continue
            merged = self.build(source, path, depth + 1)
            if isinstance(merged, dict):
                for key, value in merged.items():
                    into.setdefault(key, value)


def load_file(path: str | Path) -> tuple[Document | None, list[Problem]]:
    """Read and parse a file; an unreadable, special, oversized or non-UTF-8 file or bad YAML is a problem."""
    name = str(path)
    data, problem = _read_bounded(name)
    if problem:
        return None, [Problem(name, 1, 1, problem)]
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return None, [Problem(name, 1, 1, "the file is UTF-16 text (it starts with a byte-order mark); save it as UTF-8")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = len(data[data.rfind(b"\n", 0, exc.start) + 1 : exc.start].decode("utf-8", "replace")) + 1
        byte = data[exc.start]
        return None, [
            Problem(name, line, col, f"byte 0x{byte:02x} is not UTF-8 text ({exc.reason}); save the file as UTF-8")
        ]
    try:
        return parse_yaml(text, name)
    except YamlError as exc:
        return None, [exc.problem]


_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _read_bounded(name: str) -> tuple[bytes, str | None]:
    """The file's bytes, or why not: special files are refused by type before they are opened."""
    try:
        info = os.stat(name)
        if stat.S_ISDIR(info.st_mode):
            return b"", "this is a directory, not a playbook file"
        if not stat.S_ISREG(info.st_mode):
            kind = _KINDS.get(stat.S_IFMT(info.st_mode), "a special file")
            return b"", f"this is {kind}, not a regular file: refused without opening it"
        if info.st_size > MAX_BYTES:
            return b"", f"the file is {info.st_size} bytes; a playbook is at most {MAX_BYTES}"
        # O_NONBLOCK: should the path be swapped for a FIFO after the check, opening it still cannot hang.
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return b"", "this is not a regular file: refused"
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        return b"", f"cannot read the file: {exc.strerror or exc}"
    if len(data) > MAX_BYTES:
        return b"", f"the file is over {MAX_BYTES} bytes; a playbook is at most {MAX_BYTES}"
    return data, None
