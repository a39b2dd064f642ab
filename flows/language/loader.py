"""YAML to plain data with source positions, and problems that say where and what to fix.

The YAML dialect is deliberately narrow: duplicate keys are errors, and YAML 1.1's implicit
timestamps and yes/no/on/off booleans are plain strings, so `on: 2024-01-01` stays text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PathT = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a playbook, with where it is."""

    file: str
    line: int
    col: int
    message: str
    path: PathT = ()

    def __str__(self) -> str:
        where = f" (at {format_path(self.path)})" if self.path else ""
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


class YamlError(Exception):
    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


def parse_yaml(text: str, file: str = "<string>") -> tuple[Document, list[Problem]]:
    """Parse one YAML document. Syntax errors raise YamlError; duplicate keys are returned as problems."""
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
        raise YamlError(Problem(file, line, col, f"YAML syntax: {what}")) from None
    except yaml.YAMLError as exc:
        raise YamlError(Problem(file, 1, 1, f"YAML syntax: {exc}")) from None
    finally:
        loader.dispose()
    doc = Document(file=file, data=None)
    if node is None:
        return doc, problems
    try:
        doc.data = _build(loader, node, (), doc, problems)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise YamlError(Problem(file, line, col, f"YAML: {exc.problem}")) from None
    return doc, problems


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


_STR = "tag:yaml.org,2002:str"


def _scalar(loader: _Loader, node: yaml.Node) -> Any:
    """A scalar's value; plain text (most of a playbook) skips the constructor's generic machinery."""
    if node.tag == _STR and isinstance(node, yaml.ScalarNode):
        return node.value
    return loader.construct_object(node, deep=True)


def _build(loader: _Loader, node: yaml.Node, path: PathT, doc: Document, problems: list[Problem]) -> Any:
    doc.value_pos.setdefault(path, _mark(node))
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(loader, key_node)
            if not isinstance(key, str | int | float | bool) or key is None:
                line, col = _mark(key_node)
                problems.append(Problem(doc.file, line, col, "a mapping key must be a plain scalar", path))
                continue
            child = (*path, str(key))
            if key in out:
                line, col = _mark(key_node)
                first = doc.key_pos.get(child, (0, 0))[0]
                problems.append(
                    Problem(doc.file, line, col, f"duplicate key {key!r} (first defined on line {first})", child)
                )
                continue
            doc.key_pos[child] = _mark(key_node)
            out[key] = _build(loader, value_node, child, doc, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, i), doc, problems) for i, item in enumerate(node.value)]
    return _scalar(loader, node)


def load_file(path: str | Path) -> tuple[Document | None, list[Problem]]:
    """Read and parse a file; an unreadable file or bad YAML is a problem, not an exception."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        return None, [Problem(name, 1, 1, f"cannot read the file: {exc.strerror or exc}")]
    except UnicodeDecodeError as exc:
        return None, [Problem(name, 1, 1, f"the file is not UTF-8 text ({exc.reason})")]
    try:
        return parse_yaml(text, name)
    except YamlError as exc:
        return None, [exc.problem]
