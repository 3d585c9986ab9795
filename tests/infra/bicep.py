"""Reading infra/*.bicep without a Bicep compiler, for the infrastructure tests.

No Bicep compiler can be installed here (none is published on PyPI, npm or Debian; the Bicep
CLI and `az bicep` download a binary from GitHub). The files are parsed with the Bicep grammar
for tree-sitter (PyPI ``tree-sitter-bicep``), which catches syntax errors, and read with a small
evaluator of the expressions the templates use (literals, parameters, variables, ``a ? b : c``,
``==``, ``!=``, ``&&``, ``||``, ``!``, ``empty``, ``string``, ``union``, string interpolation).
Anything else (a resource's property, a function of Azure's) evaluates to ``Unknown`` with its
source text, which a test may replace with a value of its own.

    template = Template.load(ROOT / "infra/app/api.bicep")
    template.params["durableBackend"].default        # 'AzureStorage'
    settings = template.evaluate(template.resource("appSettings").property("properties"),
                                 {"durableBackend": "DurableTaskScheduler"})
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

_PARSER = Parser(Language(tree_sitter_bicep.language()))


class BicepSyntaxError(AssertionError):
    pass


@dataclass(frozen=True)
class Unknown:
    """A value the evaluator does not compute: the expression's source text."""

    text: str

    def __str__(self) -> str:
        return f"<{self.text}>"


@dataclass
class Param:
    name: str
    type: str
    default: Any = None
    has_default: bool = False
    allowed: list[Any] | None = None
    secure: bool = False
    decorators: list[str] = field(default_factory=list)


@dataclass
class Resource:
    symbol: str
    type: str
    condition: Node | None
    body: Node
    node: Node

    def property(self, name: str) -> Node:
        for prop in _object_properties(self.body):
            if _key(prop) == name:
                return _value(prop)
        raise KeyError(f"resource {self.symbol} has no property {name}")

    def has_property(self, name: str) -> bool:
        return any(_key(prop) == name for prop in _object_properties(self.body))


@dataclass
class Module:
    symbol: str
    path: str
    params: Node


class Template:
    def __init__(self, path: Path, tree: Node) -> None:
        self.path = path
        self.root = tree
        self.params: dict[str, Param] = {}
        self.variables: dict[str, Node] = {}
        self.resources: dict[str, Resource] = {}
        self.modules: dict[str, Module] = {}
        self.outputs: dict[str, Node] = {}
        self._read()

    @classmethod
    def load(cls, path: Path) -> Template:
        source = path.read_bytes()
        tree = _PARSER.parse(source)
        problems = [
            f"{path.name}:{n.start_point[0] + 1}:{n.start_point[1] + 1}: {n.text!r}"
            for n in _walk(tree.root_node)
            if n.type == "ERROR" or n.is_missing
        ]
        if problems:
            raise BicepSyntaxError("Bicep syntax errors:\n" + "\n".join(problems[:10]))
        return cls(path, tree.root_node)

    def _read(self) -> None:
        pending: list[Node] = []
        for node in self.root.named_children:
            if node.type == "decorators":
                pending = [d for d in node.named_children if d.type == "decorator"]
                continue
            if node.type == "parameter_declaration":
                self.params[_name(node)] = self._param(node, pending)
            elif node.type == "variable_declaration":
                self.variables[_name(node)] = node.named_children[-1]
            elif node.type == "output_declaration":
                self.outputs[_name(node)] = node.named_children[-1]
            elif node.type == "module_declaration":
                path = _text(node.named_children[1]).strip("'")
                self.modules[_name(node)] = Module(_name(node), path, node.named_children[-1])
            pending = []
        for node in _walk(self.root):
            if node.type == "resource_declaration":
                resource = _resource(node)
                self.resources[resource.symbol] = resource

    def _param(self, node: Node, decorators: list[Node]) -> Param:
        children = node.named_children
        param = Param(name=_text(children[0]), type=_text(children[1]))
        if len(children) > 2:
            param.has_default = True
            param.default = self.evaluate(children[2], {})
        for decorator in decorators:
            call = decorator.named_children[0]
            name = _text(call.named_children[0]) if call.type == "call_expression" else _text(call)
            param.decorators.append(name)
            if name == "secure":
                param.secure = True
            if name == "allowed":
                param.allowed = self.evaluate(call.named_children[1].named_children[0], {})
        return param

    def resource(self, symbol: str) -> Resource:
        return self.resources[symbol]

    def evaluate(self, node: Node, params: Mapping[str, Any]) -> Any:
        return _Evaluator(self, params).value(node)

    def values(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Every parameter's value: its default, or the override."""
        values = {name: p.default for name, p in self.params.items() if p.has_default}
        values.update(overrides)
        return values


class _Evaluator:
    def __init__(self, template: Template, params: Mapping[str, Any]) -> None:
        self.template = template
        self.params = params

    def value(self, node: Node) -> Any:
        kind = node.type
        if kind == "string":
            return self._string(node)
        if kind == "multiline_string":
            return _text(node).strip("'")[2:-2] if _text(node).startswith("'''") else _text(node)
        if kind == "number":
            return int(_text(node))
        if kind == "boolean":
            return _text(node) == "true"
        if kind == "null":
            return None
        if kind == "array":
            return [self.value(child) for child in node.named_children]
        if kind == "object":
            return {_key(p): self.value(_value(p)) for p in _object_properties(node)}
        if kind == "parenthesized_expression":
            return self.value(node.named_children[0])
        if kind == "identifier":
            name = _text(node)
            if name in self.params:
                return self.params[name]
            if name in self.template.variables:
                return self.value(self.template.variables[name])
            return Unknown(name)
        if kind == "ternary_expression":
            condition, yes, no = node.named_children
            decided = self.value(condition)
            if isinstance(decided, bool):
                return self.value(yes if decided else no)
            return Unknown(_text(node))
        if kind == "unary_expression":
            operand = self.value(node.named_children[-1])
            if _text(node).startswith("!") and isinstance(operand, bool):
                return not operand
            return Unknown(_text(node))
        if kind == "binary_expression":
            return self._binary(node)
        if kind == "call_expression":
            return self._call(node)
        return Unknown(_text(node))

    def _string(self, node: Node) -> Any:
        parts: list[str] = []
        for child in node.named_children:
            if child.type == "string_content":
                parts.append(_text(child))
            elif child.type == "escape_sequence":
                parts.append(
                    {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\$": "$"}.get(_text(child), "")
                )
            elif child.type == "interpolation":
                inner = self.value(child.named_children[0])
                parts.append(str(inner))
        return "".join(parts)

    def _binary(self, node: Node) -> Any:
        left_node, right_node = node.named_children[0], node.named_children[-1]
        operator = _text(node)[
            left_node.end_byte - node.start_byte : right_node.start_byte - node.start_byte
        ].strip()
        left, right = self.value(left_node), self.value(right_node)
        if isinstance(left, Unknown) or isinstance(right, Unknown):
            return Unknown(_text(node))
        if operator == "==":
            return left == right
        if operator == "!=":
            return left != right
        if operator == "&&":
            return bool(left) and bool(right)
        if operator == "||":
            return bool(left) or bool(right)
        return Unknown(_text(node))

    def _call(self, node: Node) -> Any:
        name = _text(node.named_children[0])
        arguments = node.named_children[1].named_children if len(node.named_children) > 1 else []
        values = [self.value(a) for a in arguments]
        if name == "empty" and len(values) == 1 and not isinstance(values[0], Unknown):
            return not values[0]
        if name == "string" and len(values) == 1 and not isinstance(values[0], Unknown):
            return json.dumps(values[0]) if not isinstance(values[0], str) else values[0]
        if name == "union" and all(isinstance(v, dict) for v in values):
            merged: dict[str, Any] = {}
            for value in values:
                merged.update(value)
            return merged
        if name == "split" and len(values) == 2 and all(isinstance(v, str) for v in values):
            return values[0].split(values[1])
        return Unknown(_text(node))


def _resource(node: Node) -> Resource:
    children = node.named_children
    symbol = _text(children[0])
    type_text = _text(children[1]).strip("'")
    condition: Node | None = None
    body = children[-1]
    for child in children[2:]:
        if child.type == "if_statement":
            condition = child.named_children[0]
            body = child.named_children[-1]
    return Resource(symbol, type_text, condition, body, node)


def _object_properties(node: Node) -> Iterator[Node]:
    return (child for child in node.named_children if child.type == "object_property")


def _key(prop: Node) -> str:
    return _text(prop.named_children[0]).strip("'")


def _value(prop: Node) -> Node:
    return prop.named_children[-1]


def _name(node: Node) -> str:
    return _text(node.named_children[0])


def _text(node: Node) -> str:
    return (node.text or b"").decode()


def _walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from _walk(child)


def walk(node: Node) -> Iterator[Node]:
    return _walk(node)


def text(node: Node) -> str:
    return _text(node)
