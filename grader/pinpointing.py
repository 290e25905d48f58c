"""Find the line of the student's code responsible for a diagnosis.

The catalogue says how (`locate` rules); this module applies the rules to
the syntax tree of the student's function. Rules are generic: calls by name,
keyword values, operators, parameter uses, assignments, return statements.
Lines are lines of the notebook cell, as the student sees them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from grader.locating import Definition, parse_cell


@dataclass(frozen=True)
class FunctionTree:
    """The parsed graded function and, for a factory, its inner function."""

    outer: ast.FunctionDef | ast.AsyncFunctionDef
    inner: ast.FunctionDef | ast.AsyncFunctionDef | None

    @property
    def params(self) -> list[str]:
        return [a.arg for a in self.outer.args.args]

    @property
    def data_params(self) -> list[str]:
        """Parameters of the function that receives the data."""
        target = self.inner or self.outer
        return [a.arg for a in target.args.args]

    def nodes(self) -> list[ast.AST]:
        found = [n for n in ast.walk(self.outer) if hasattr(n, "lineno")]
        return sorted(found, key=lambda n: (n.lineno, n.col_offset))


def function_tree(definition: Definition) -> FunctionTree | None:
    try:
        module = parse_cell(definition.cell_source)
    except SyntaxError:
        return None
    for node in module.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                and node.name == definition.name and node.lineno == definition.line:
            inner = next(
                (child for child in ast.walk(node)
                 if child is not node
                 and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))),
                None,
            )
            return FunctionTree(node, inner)
    return None


def find_line(tree: FunctionTree, rules: Iterable[dict[str, Any]]) -> int:
    """The first line matched by the rules, tried in order; else the `def`."""
    for rule in rules:
        line = _apply(tree, rule)
        if line is not None:
            return line
    return tree.outer.lineno


def find_name(tree: FunctionTree, name: str) -> int | None:
    """The first line where the function reads `name`."""
    for node in tree.nodes():
        if isinstance(node, ast.Name) and node.id == name:
            return node.lineno
    return None


def has_placeholder(tree: FunctionTree) -> bool:
    """True when the template's None placeholders are still there."""
    return _placeholder_line(tree) is not None


def _apply(tree: FunctionTree, rule: dict[str, Any]) -> int | None:
    nodes = tree.nodes()
    if "calls" in rule:
        return _calls(tree, nodes, rule)
    if "keyword" in rule:
        return _keyword(nodes, rule["keyword"])
    if "operator" in rule:
        return _operator(nodes, rule["operator"])
    if "params" in rule:
        return _first_use(nodes, [tree.params[i] for i in rule["params"]
                                  if i < len(tree.params)])
    if "params_of_inner" in rule:
        names = [tree.data_params[i] for i in rule["params_of_inner"]
                 if i < len(tree.data_params)]
        return _first_use(nodes, names)
    if "assigns" in rule:
        return _assigns(nodes, set(rule["assigns"]))
    if "return" in rule:
        return _last_return(tree, nodes)
    if "shape_index" in rule:
        return _shape_index(nodes, rule["shape_index"])
    if "loop_assign" in rule:
        return _loop_assign(nodes)
    if "row_subscript" in rule:
        return _row_subscript(tree, nodes)
    if "mutates_param" in rule:
        index = rule["mutates_param"]
        if index < len(tree.data_params):
            return _mutation(nodes, tree.data_params[index])
        return None
    if "constant_none" in rule:
        return _placeholder_line(tree)
    return None


def _callee_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _calls(
    tree: FunctionTree, nodes: list[ast.AST], rule: dict[str, Any]
) -> int | None:
    names = set(rule["calls"])
    without = rule.get("without_param")
    excluded = tree.params[without] if without is not None and \
        without < len(tree.params) else None
    wanted = int(rule.get("nth", 1))
    seen = 0
    for node in nodes:
        if isinstance(node, ast.Call) and _callee_name(node) in names:
            if excluded is not None and _mentions(node, excluded):
                continue
            seen += 1
            if seen == wanted:
                return node.lineno
    return None


def _mentions(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node))


def _keyword(nodes: list[ast.AST], wanted: dict[str, Any]) -> int | None:
    for node in nodes:
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg in wanted and isinstance(keyword.value, ast.Constant) \
                        and keyword.value.value == wanted[keyword.arg]:
                    return node.lineno
    return None


def _operator(nodes: list[ast.AST], name: str) -> int | None:
    for node in nodes:
        if (isinstance(node, (ast.BinOp, ast.AugAssign))
                and type(node.op).__name__ == name):
            return node.lineno
    return None


def _first_use(nodes: list[ast.AST], names: list[str]) -> int | None:
    for node in nodes:
        if isinstance(node, ast.Name) and node.id in names \
                and isinstance(node.ctx, ast.Load):
            return node.lineno
    return None


def _assigns(nodes: list[ast.AST], names: set[str]) -> int | None:
    for node in nodes:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in names:
                    return node.lineno
    return None


def _last_return(tree: FunctionTree, nodes: list[ast.AST]) -> int | None:
    inner_name = tree.inner.name if tree.inner else None
    returns = [
        node for node in nodes
        if isinstance(node, ast.Return)
        and not (isinstance(node.value, ast.Name) and node.value.id == inner_name)
    ]
    return returns[-1].lineno if returns else None


def _shape_index(nodes: list[ast.AST], index: int) -> int | None:
    for node in nodes:
        if (isinstance(node, ast.Subscript)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "shape"
                and isinstance(node.slice, ast.Constant)
                and node.slice.value == index):
            return node.lineno
    return None


def _loop_assign(nodes: list[ast.AST]) -> int | None:
    """An accumulator set before a loop and replaced (not added to) inside it."""
    loops = [n for n in nodes if isinstance(n, (ast.For, ast.While))]
    for loop in loops:
        initialised = {
            target.id
            for node in nodes
            if isinstance(node, ast.Assign) and node.lineno < loop.lineno
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for child in ast.walk(loop):
            if isinstance(child, ast.Assign):
                for target in child.targets:
                    if isinstance(target, ast.Name) and target.id in initialised \
                            and not _mentions(child.value, target.id):
                        return child.lineno
    return None


def _row_subscript(tree: FunctionTree, nodes: list[ast.AST]) -> int | None:
    params = set(tree.data_params)
    for node in nodes:
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                and node.value.id in params and isinstance(node.slice, ast.Name):
            return node.lineno
    return None


def _mutation(nodes: list[ast.AST], name: str) -> int | None:
    for node in nodes:
        if isinstance(node, ast.AugAssign) and _target_is(node.target, name):
            return node.lineno
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Subscript) and _target_is(t, name) for t in node.targets
        ):
            return node.lineno
    return None


def _target_is(target: ast.AST, name: str) -> bool:
    while isinstance(target, ast.Subscript):
        target = target.value
    return isinstance(target, ast.Name) and target.id == name


def _placeholder_line(tree: FunctionTree) -> int | None:
    """A `None` used as a value to be filled in, not `return None` or `is None`."""
    for node in tree.nodes():
        if isinstance(node, ast.Assign) and _is_none(node.value):
            return node.lineno
        if isinstance(node, (ast.BinOp, ast.AugAssign)):
            operands = [node.left, node.right] if isinstance(node, ast.BinOp) \
                else [node.value]
            if any(_is_none(operand) for operand in operands):
                return node.lineno
        if isinstance(node, ast.Call) and (
            _is_none(node.func) or any(_is_none(arg) for arg in node.args)
        ):
            return node.lineno
    return None


def _is_none(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is None
