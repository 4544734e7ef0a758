"""Deterministic metering by rewriting the contract's syntax tree once, at deploy.

Fuel is charged for what the code *does*, counted on its structure, never on time: each function entry, each loop
iteration and comprehension item, each call, and operations in proportion to the size of what they touch or build
(see runtime.py for the price list). The rewritten code calls guard functions whose names start with ``_q_`` —
names contract code itself can never write (validate.py refuses every name starting with ``_``).

Rewrites:
* ``def f(…): body`` → ``def f(…): _q_enter(); try: body finally: _q_exit()`` (fuel + call depth);
* ``for x in it`` and comprehensions → ``for x in _q_iter(it)``; ``while c: body`` → ``while c: _q_tick(); body``;
* ``f(args)`` → ``_q_call(f)(args)``; ``obj.m(args)`` for size-changing methods → ``_q_method(obj, 'm', args)``;
* ``a + b``, ``a * b``, ``a ** b``, ``a << b``, ``a % b`` → ``_q_binop(op, a, b)`` (size checked *before* building);
* ``x op= v`` → ``x = _q_binop(op, x, v)``; ``t[k] op= v`` → ``_q_augitem(t, k, op, v)``;
* comparisons → ``_q_compare(op, a, b)`` (priced by the size of what is compared), except against a number constant;
* ``s[i:j]`` → ``_q_slice(s, i, j, step)``."""

from __future__ import annotations

import ast
from typing import Final

GUARDED_BINOPS: Final = {ast.Add: "+", ast.Mult: "*", ast.Pow: "**", ast.LShift: "<<", ast.Mod: "%"}
OTHER_BINOPS: Final = {ast.Sub: "-", ast.FloorDiv: "//", ast.RShift: ">>", ast.BitOr: "|", ast.BitXor: "^",
                       ast.BitAnd: "&"}
COMPARE_OPS: Final = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
                      ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}
SIZED_METHODS: Final = frozenset({"join", "replace", "extend", "split", "copy", "index", "count", "find", "sort",
                                  "reverse", "insert", "remove", "update", "encode", "decode", "upper", "lower",
                                  "strip", "lstrip", "rstrip", "title", "capitalize", "hex", "fromhex", "keys",
                                  "values", "items", "startswith", "endswith", "pop"})
"""Methods whose cost (or result size) grows with the receiver or the arguments: priced and bounded by the guard."""


def _name(n: str) -> ast.Name:
    return ast.Name(id=n, ctx=ast.Load())


def _guard_call(fn: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_name(fn), args=list(args), keywords=[])


def _is_number(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int


class Instrumenter(ast.NodeTransformer):
    """Applies the rewrites listed in the module docstring."""

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        self.generic_visit(node)
        body = node.body
        doc: list[ast.stmt] = []
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            doc, body = body[:1], body[1:] or [ast.Pass()]
        guarded = ast.Try(body=body, handlers=[], orelse=[],
                          finalbody=[ast.Expr(_guard_call("_q_exit"))])
        node.body = [*doc, ast.Expr(_guard_call("_q_enter")), guarded]
        return node

    def visit_For(self, node: ast.For) -> ast.For:
        self.generic_visit(node)
        node.iter = _guard_call("_q_iter", node.iter)
        return node

    def visit_While(self, node: ast.While) -> ast.While:
        self.generic_visit(node)
        node.body = [ast.Expr(_guard_call("_q_tick")), *node.body]
        return node

    def visit_comprehension(self, node: ast.comprehension) -> ast.comprehension:
        self.generic_visit(node)
        node.iter = _guard_call("_q_iter", node.iter)
        return node

    def visit_Call(self, node: ast.Call) -> ast.expr:
        self.generic_visit(node)
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr in SIZED_METHODS and not node.keywords:
            return _guard_call("_q_method", f.value, ast.Constant(f.attr), *node.args)
        node.func = _guard_call("_q_call", f)
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        self.generic_visit(node)
        op = GUARDED_BINOPS.get(type(node.op))
        if op is None:
            return node
        return _guard_call("_q_binop", ast.Constant(op), node.left, node.right)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.stmt:
        self.generic_visit(node)
        op = GUARDED_BINOPS.get(type(node.op)) or OTHER_BINOPS[type(node.op)]
        t = node.target
        if isinstance(t, ast.Name):
            value = _guard_call("_q_binop", ast.Constant(op), ast.Name(id=t.id, ctx=ast.Load()), node.value)
            return ast.Assign(targets=[ast.Name(id=t.id, ctx=ast.Store())], value=value)
        assert isinstance(t, ast.Subscript)
        return ast.Expr(_guard_call("_q_augitem", t.value, t.slice, ast.Constant(op), node.value))

    def visit_Compare(self, node: ast.Compare) -> ast.expr:
        self.generic_visit(node)
        if len(node.ops) == 1:
            a, b = node.left, node.comparators[0]
            if _is_number(a) or _is_number(b) or isinstance(node.ops[0], ast.Is | ast.IsNot):
                return node
            return _guard_call("_q_compare", ast.Constant(COMPARE_OPS[type(node.ops[0])]), a, b)
        # a < b < c: evaluate pairwise through the guard, left to right, each operand once.
        return _guard_call("_q_chain", ast.List(elts=[ast.Constant(COMPARE_OPS[type(o)]) for o in node.ops],
                                                ctx=ast.Load()),
                           ast.List(elts=[node.left, *node.comparators], ctx=ast.Load()))

    def visit_FormattedValue(self, node: ast.FormattedValue) -> ast.FormattedValue:
        self.generic_visit(node)
        node.value = _guard_call("_q_fmt", node.value)
        return node

    def visit_Subscript(self, node: ast.Subscript) -> ast.expr:
        self.generic_visit(node)
        if isinstance(node.slice, ast.Slice) and isinstance(node.ctx, ast.Load):
            s = node.slice
            none = ast.Constant(None)
            return _guard_call("_q_slice", node.value, s.lower or none, s.upper or none, s.step or none)
        return node


def instrument(tree: ast.Module) -> ast.Module:
    """The metered version of a validated contract (a new tree; the input is consumed)."""
    out = Instrumenter().visit(tree)
    return ast.fix_missing_locations(out)
