"""Reading a YAML file into a pydantic model, with errors that name the file, line and key.

Study files (``psych201 run``), post-training plans (``psych201 posttrain``) and model registries
share it. A YAML file is input like any other, so it is bounded before it is expanded: its size,
its aliases, its nesting depth and the size of the tree its aliases expand to (a "billion laughs"
alias bomb in ``conditions[].params`` took 276 s and 4.7 GB before failing). The text must be
UTF-8; anything else is one line naming the byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from psych201.bounds import read_bounded

ModelT = TypeVar("ModelT", bound=BaseModel)

#: Largest YAML file read (study files and plans are a few KiB; the bundled registry ~30 KiB).
MAX_YAML_BYTES = 2 * 1024 * 1024
#: Most aliases (``*name``) one file may use.
MAX_YAML_ALIASES = 200
#: Deepest nesting of mappings and sequences.
MAX_YAML_DEPTH = 64
#: Most nodes the document may hold once every alias is expanded.
MAX_YAML_NODES = 200_000


class YamlLimitError(ValueError):
    """A YAML text over one of the limits above (the message says which)."""


class _BoundedLoader(yaml.SafeLoader):
    """A safe loader that counts aliases and depth while composing, before anything expands."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise YamlLimitError(f"more than {MAX_YAML_ALIASES} aliases")
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise YamlLimitError(f"nested deeper than {MAX_YAML_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_nodes(root: yaml.Node) -> int:
    """Nodes of the document with every alias expanded, counted over the shared node graph
    (each node once, so a bomb is measured without being built); raises on a recursive alias."""
    sizes: dict[int, int] = {}
    order: list[yaml.Node] = []
    state: dict[int, str] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative post-order: aliases can make paths longer than the recursion limit
        node, done = stack.pop()
        key = id(node)
        if done:
            state[key] = "done"
            order.append(node)
            continue
        if state.get(key) == "done":
            continue
        if state.get(key) == "open":
            raise YamlLimitError("a recursive alias (a node that contains itself)")
        state[key] = "open"
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))
    for node in order:
        total = 1 + sum(sizes[id(child)] for child in _children(node))
        sizes[id(node)] = min(total, MAX_YAML_NODES + 1)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load_yaml_text(text: str) -> Any:
    """``yaml.safe_load`` within the limits above: :class:`YamlLimitError` (or a YAML error)
    before an oversized, too deep or alias-bombed document is built."""
    if len(text) > MAX_YAML_BYTES:
        raise YamlLimitError(f"larger than {MAX_YAML_BYTES // (1024 * 1024)} MiB")
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_nodes(node) > MAX_YAML_NODES:
            raise YamlLimitError(
                f"its aliases expand to more than {MAX_YAML_NODES} values (an alias bomb?)"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml_file(path: Path, error: type[Exception], *, kind: str) -> tuple[str, Any]:
    """The text of the YAML file ``path`` and its value, bounded and decoded as UTF-8;
    every problem raises ``error`` with one line naming the file (and line, where known)."""
    data = read_bounded(path, MAX_YAML_BYTES, error, kind=kind)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(
            f"{path}:{line}: the {kind} is not UTF-8 (byte 0x{data[exc.start]:02X} at byte "
            f"{exc.start + 1}); save it as UTF-8"
        ) from exc
    try:
        return text, load_yaml_text(text)
    except YamlLimitError as exc:
        raise error(f"{path}: the {kind} is refused: {exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise error(f"{path}{where}: not valid YAML ({_one_line(exc)})") from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def read_yaml_model(
    path: str | Path,
    model: type[ModelT],
    error: type[Exception],
    *,
    kind: str,
    expected: str,
    invalid: str = "{reasons}",
) -> ModelT:
    """``model`` validated from the YAML mapping in ``path``; problems raise ``error``.

    ``kind`` names the file in messages ("study file", "plan"); ``expected`` says what the
    mapping must hold when the file is something else; ``invalid`` formats the schema problems
    (``{reasons}``: "key.path: message; ...").
    """
    p = Path(path)
    _, raw = read_yaml_file(p, error, kind=kind)
    if not isinstance(raw, dict):
        raise error(f"{p}: a {kind} is a mapping ({expected})")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise error(f"{p}: {invalid.format(reasons=reasons)}") from exc
