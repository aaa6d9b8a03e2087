"""Eligibility rules: which reported device states may join a task's rounds.

A rule is a boolean expression over the check-in's device state, for example::

    charging and unmetered and idle and battery >= 0.3 and runtime_version >= "1.0"

Grammar: ``and`` / ``or`` / ``not``, parentheses, comparisons (``== != < <= > >=``)
between a field and a literal (number, string, true/false). Fields: charging,
unmetered, idle (booleans), battery (0..1), free_storage_mb, runtime (string),
runtime_version (compared as a dotted version). An empty rule admits every device.
Python's own parser reads the text, and a whitelist walk rejects anything else, with
the column of the offending token.
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass
from typing import Any, Callable

from protocol.errors import ProtocolError

FIELDS: dict[str, type] = {
    "charging": bool,
    "unmetered": bool,
    "idle": bool,
    "battery": float,
    "free_storage_mb": float,
    "runtime": str,
    "runtime_version": str,
}
_COMPARE = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}


def _version(text: str) -> tuple:
    parts = []
    for piece in str(text).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@dataclass(frozen=True)
class EligibilityRule:
    text: str
    # The top-level clauses with their source as written, made once at parse time: every
    # ineligible check-in asks which ones failed (copying and unparsing them each time was
    # a third of a simulated check-in's CPU).
    _clauses: tuple = ()
    _admits: Any = None  # the tree compiled to closures once: it runs on every check-in

    @classmethod
    def parse(cls, text: str | None) -> "EligibilityRule":
        text = (text or "").strip()
        if not text:
            return cls("")
        try:
            tree = _BoolLiterals().visit(ast.parse(text, mode="eval")).body
        except SyntaxError as exc:
            raise ProtocolError(f"eligibility rule: syntax error at column {exc.offset}: {exc.msg}", "bad_rule") from exc
        _check(tree)
        clauses = tree.values if isinstance(tree, ast.BoolOp) and isinstance(tree.op, ast.And) else [tree]
        return cls(text, tuple((_compile(clause), _source(clause)) for clause in clauses), _compile(tree))

    def admits(self, state: dict) -> bool:
        return True if self._admits is None else self._admits(state)

    def failed_clauses(self, state: dict) -> list[str]:
        """The clauses of a top-level ``and`` this state fails, as written in the rule (the
        whole rule when it is not a conjunction): what the operator page counts."""
        return [source for admits, source in self._clauses if not admits(state)]


class _BoolLiterals(ast.NodeTransformer):
    """The rule language spells booleans true/false; Python parses those as names."""

    def visit_Name(self, node: ast.Name):
        if node.id in ("true", "false"):
            return ast.copy_location(ast.Constant(node.id == "true"), node)
        return node


def _fail(node, message: str):
    raise ProtocolError(f"eligibility rule: {message} at column {node.col_offset + 1}", "bad_rule")


def _check(node) -> None:
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check(node.operand)
    elif isinstance(node, ast.Name):
        if node.id not in FIELDS:
            _fail(node, f"unknown field '{node.id}' (fields: {', '.join(FIELDS)})")
        if FIELDS[node.id] is not bool:
            _fail(node, f"field '{node.id}' is not a boolean; compare it with a value")
    elif isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        for op in node.ops:
            if type(op) not in _COMPARE:
                _fail(node, "only == != < <= > >= comparisons are allowed")
        names = [o for o in operands if isinstance(o, ast.Name)]
        if len(operands) != 2 or len(names) != 1:
            _fail(node, "a comparison needs exactly one field and one literal")
        other = operands[1] if operands[0] is names[0] else operands[0]
        if names[0].id not in FIELDS:
            _fail(names[0], f"unknown field '{names[0].id}' (fields: {', '.join(FIELDS)})")
        if not isinstance(other, ast.Constant) or not isinstance(other.value, (int, float, str, bool)):
            _fail(other, "expected a number, string or true/false literal")
        expected = FIELDS[names[0].id]
        if (expected is str) != isinstance(other.value, str):
            _fail(other, f"field '{names[0].id}' needs a {'string' if expected is str else 'number/boolean'} literal")
    else:
        _fail(node, f"unexpected {type(node).__name__}")


class _BoolNames(ast.NodeTransformer):
    """Back to the rule language's true/false for display."""

    def visit_Constant(self, node: ast.Constant):
        if isinstance(node.value, bool):
            return ast.copy_location(ast.Name("true" if node.value else "false"), node)
        return node


def _source(node) -> str:
    """A clause as the rule language writes it."""
    return ast.unparse(_BoolNames().visit(copy.deepcopy(node)))


def _compile(node) -> Callable[[dict], bool]:
    """The checked tree as nested closures over the state dict. A field the device does not
    report makes a comparison false (it is not eligible by it) and a boolean field false."""
    if isinstance(node, ast.BoolOp):
        parts = tuple(_compile(v) for v in node.values)
        # Loops, not all()/any() over a generator: a rule runs on every check-in, and making the
        # generator cost as much as the clauses.
        if isinstance(node.op, ast.And):
            def conjunction(state: dict) -> bool:
                for part in parts:
                    if not part(state):
                        return False
                return True

            return conjunction

        def disjunction(state: dict) -> bool:
            for part in parts:
                if part(state):
                    return True
            return False

        return disjunction
    if isinstance(node, ast.UnaryOp):
        operand = _compile(node.operand)
        return lambda state: not operand(state)
    if isinstance(node, ast.Name):
        key = node.id
        return lambda state: bool(state.get(key, False))
    field_first = isinstance(node.left, ast.Name)
    name = node.left.id if field_first else node.comparators[0].id
    literal = (node.comparators[0] if field_first else node.left).value
    compare = _COMPARE[type(node.ops[0])]
    kind = FIELDS[name]
    if name == "runtime_version":
        convert, literal = _version, _version(literal)
    else:
        convert = str if kind is str else kind

    def comparison(state: dict) -> bool:
        value = state.get(name)
        if value is None:
            return False
        value = convert(value)
        return compare(value, literal) if field_first else compare(literal, value)

    return comparison
