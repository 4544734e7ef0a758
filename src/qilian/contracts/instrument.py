"""Deterministic metering by rewriting the contract's syntax tree once, at deploy.

Fuel is charged for what the code *does*, counted on its structure, never on time: each function entry, each loop
iteration and comprehension item, each call, and operations in proportion to the size of what they touch or build
(see runtime.py for the price list). The rewritten code calls guard functions whose names start with ``_q_`` —
names contract code itself can never write (validate.py refuses every name starting with ``_``).

Every operation whose cost or result depends on its operands goes through a guard, so the guards are the one
place where sizes are checked and priced *before* the interpreter does the work:

* ``def f(…): body`` → ``def f(…): _q_enter(); try: body finally: _q_exit()`` (fuel + call depth);
* every block (function body, branch, loop body) starts with ``_q_tick(w)``, ``w`` priced by its statements' size;
* ``for x in it`` and comprehensions → ``for x in _q_iter(it, w)`` (``w``: the size of a comprehension's item);
* ``f(args)`` → ``_q_call(f)(args)``; every method call ``obj.m(args, k=v)`` → ``_q_method(obj, 'm', args, k=v)``
  (keywords included: a keyword cannot skip the guard);
* every binary operator ``a op b`` → ``_q_binop(op, a, b)``; ``x op= v`` → ``x = _q_binop(op, x, v)``;
  ``t[k] op= v`` → ``_q_augitem(t, k, op, v)``;
* comparisons → ``_q_compare(op, a, b)`` (priced by a bounded walk of what is compared), except ``is`` and
  ordering/equality against a number constant; ``in`` always goes through the guard;
* ``s[k]`` → ``_q_getitem(s, k)``; ``s[i:j]`` → ``_q_slice(s, i, j, step)``; ``d[k] = v`` →
  ``_q_setitem(d, k, v)``; ``L[i:j] = v`` → ``_q_setslice(L, i, j, step, v)``; ``del d[k]`` → ``_q_delitem(d, k)``;
* dict display and comprehension keys → ``_q_key(k)`` (keys are str, int, bytes, bool or None);
* f-strings → ``_q_fstr([part, …])`` (the total length is checked before the text is built)."""

from __future__ import annotations

import ast
from typing import Final

BINOPS: Final = {ast.Add: "+", ast.Mult: "*", ast.Pow: "**", ast.LShift: "<<", ast.Mod: "%", ast.Sub: "-",
                 ast.FloorDiv: "//", ast.RShift: ">>", ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&"}
NODES_PER_FUEL: Final = 4
"""Straight-line code: each block (function body, branch, loop body) charges 1 fuel per this many syntax-tree nodes
of its statements when it starts, so no amount of unguarded code runs for free between guards."""
COMPARE_OPS: Final = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
                      ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}


def _name(n: str) -> ast.Name:
    return ast.Name(id=n, ctx=ast.Load())


def _guard_call(fn: str, *args: ast.expr, keywords: list[ast.keyword] | None = None) -> ast.Call:
    return ast.Call(func=_name(fn), args=list(args), keywords=keywords or [])


def _is_number(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int


def _load(node: ast.expr) -> ast.expr:
    """The same target expression read instead of written (contexts are per node)."""
    if isinstance(node, ast.Name):
        return ast.Name(id=node.id, ctx=ast.Load())
    return node


def _slice_parts(s: ast.Slice) -> tuple[ast.expr, ast.expr, ast.expr]:
    none = ast.Constant(None)
    return s.lower or none, s.upper or none, s.step or none


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
        self.generic_visit(node)  # the body's block charge (compute_block_charges) is the per-iteration price
        return node

    def visit_comprehension(self, node: ast.comprehension) -> ast.comprehension:
        weight = int(getattr(node, "q_weight", 0))
        self.generic_visit(node)
        node.iter = _guard_call("_q_iter", node.iter, ast.Constant(weight))
        return node

    def visit_ListComp(self, node: ast.ListComp) -> ast.expr:
        _weigh_generators(node.generators, [node.elt])
        self.generic_visit(node)
        return node

    def visit_Call(self, node: ast.Call) -> ast.expr:
        f = node.func
        if isinstance(f, ast.Name) and f.id.startswith("_q_"):
            return node  # a charge inserted by compute_block_charges
        self.generic_visit(node)
        if isinstance(f, ast.Attribute):
            return _guard_call("_q_method", f.value, ast.Constant(f.attr), *node.args, keywords=node.keywords)
        node.func = _guard_call("_q_call", f)
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        self.generic_visit(node)
        return _guard_call("_q_binop", ast.Constant(BINOPS[type(node.op)]), node.left, node.right)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.stmt:
        self.generic_visit(node)
        op = BINOPS[type(node.op)]
        t = node.target
        if isinstance(t, ast.Name):
            value = _guard_call("_q_binop", ast.Constant(op), ast.Name(id=t.id, ctx=ast.Load()), node.value)
            return ast.Assign(targets=[ast.Name(id=t.id, ctx=ast.Store())], value=value)
        assert isinstance(t, ast.Subscript) and not isinstance(t.slice, ast.Slice)
        return ast.Expr(_guard_call("_q_augitem", t.value, t.slice, ast.Constant(op), node.value))

    def visit_Assign(self, node: ast.Assign) -> ast.stmt:
        self.generic_visit(node)
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Subscript):
            return self._store(node.targets[0], node.value)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.stmt:
        self.generic_visit(node)
        if isinstance(node.target, ast.Subscript) and node.value is not None:
            return self._store(node.target, node.value)
        return node

    @staticmethod
    def _store(t: ast.Subscript, value: ast.expr) -> ast.stmt:
        if isinstance(t.slice, ast.Slice):
            return ast.Expr(_guard_call("_q_setslice", t.value, *_slice_parts(t.slice), value))
        return ast.Expr(_guard_call("_q_setitem", t.value, t.slice, value))

    def visit_Delete(self, node: ast.Delete) -> list[ast.stmt]:
        self.generic_visit(node)
        out: list[ast.stmt] = []
        for t in node.targets:
            if isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Slice):
                out.append(ast.Expr(_guard_call("_q_delslice", t.value, *_slice_parts(t.slice))))
            elif isinstance(t, ast.Subscript):
                out.append(ast.Expr(_guard_call("_q_delitem", t.value, t.slice)))
            else:
                out.append(ast.Delete(targets=[t]))
        return [ast.copy_location(s, node) for s in out]

    def visit_Compare(self, node: ast.Compare) -> ast.expr:
        self.generic_visit(node)
        if len(node.ops) == 1:
            a, b, op = node.left, node.comparators[0], node.ops[0]
            if isinstance(op, ast.Is | ast.IsNot) or (
                    (_is_number(a) or _is_number(b)) and not isinstance(op, ast.In | ast.NotIn)):
                return node
            return _guard_call("_q_compare", ast.Constant(COMPARE_OPS[type(op)]), a, b)
        # a < b < c: evaluate pairwise through the guard, left to right, each operand once.
        return _guard_call("_q_chain", ast.List(elts=[ast.Constant(COMPARE_OPS[type(o)]) for o in node.ops],
                                                ctx=ast.Load()),
                           ast.List(elts=[node.left, *node.comparators], ctx=ast.Load()))

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.expr:
        self.generic_visit(node)
        parts = [v.value if isinstance(v, ast.FormattedValue) else v for v in node.values]
        return _guard_call("_q_fstr", ast.List(elts=parts, ctx=ast.Load()))

    def visit_Subscript(self, node: ast.Subscript) -> ast.expr:
        self.generic_visit(node)
        if not isinstance(node.ctx, ast.Load):
            return node  # stores and deletes are rewritten by their statement
        if isinstance(node.slice, ast.Slice):
            return _guard_call("_q_slice", node.value, *_slice_parts(node.slice))
        return _guard_call("_q_getitem", node.value, node.slice)

    def visit_Dict(self, node: ast.Dict) -> ast.expr:
        self.generic_visit(node)
        node.keys = [_guard_call("_q_key", k) if k is not None else None for k in node.keys]
        return node

    def visit_DictComp(self, node: ast.DictComp) -> ast.expr:
        _weigh_generators(node.generators, [node.key, node.value])
        self.generic_visit(node)
        node.key = _guard_call("_q_key", node.key)
        return node


def compute_node_count(node: ast.AST) -> int:
    """Syntax-tree nodes under ``node`` (inclusive)."""
    return sum(1 for _ in ast.walk(node))


def _weigh_generators(generators: list[ast.comprehension], per_item: list[ast.expr]) -> None:
    nodes = sum(compute_node_count(e) for e in per_item)
    nodes += sum(compute_node_count(c) for g in generators for c in g.ifs)
    for g in generators:
        g.q_weight = nodes // NODES_PER_FUEL  # type: ignore[attr-defined]


def _header_nodes(stmt: ast.stmt) -> int:
    """Nodes evaluated where a statement stands (for compound statements, the header only: their bodies are
    blocks with their own charge)."""
    if isinstance(stmt, ast.If | ast.While):
        return compute_node_count(stmt.test)
    if isinstance(stmt, ast.For):
        return compute_node_count(stmt.iter)
    if isinstance(stmt, ast.FunctionDef):
        return 1
    return compute_node_count(stmt)


def compute_block_charges(tree: ast.Module) -> None:
    """Insert ``_q_tick(w)`` at the start of every block (function body, branch, loop body): ``w`` prices the
    block's straight-line statements, and a loop body also its test (while) or target (for)."""
    for node in list(ast.walk(tree)):
        if isinstance(node, ast.Module):
            continue
        for field in ("body", "orelse"):
            block = getattr(node, field, None)
            if not isinstance(block, list) or not block or not isinstance(block[0], ast.stmt):
                continue
            nodes = sum(_header_nodes(s) for s in block)
            if field == "body" and isinstance(node, ast.While):
                nodes += compute_node_count(node.test)
            elif field == "body" and isinstance(node, ast.For):
                nodes += compute_node_count(node.target)
            tick = ast.Expr(_guard_call("_q_tick", ast.Constant(1 + nodes // NODES_PER_FUEL)))
            at = 1 if (isinstance(node, ast.FunctionDef) and isinstance(block[0], ast.Expr)
                       and isinstance(block[0].value, ast.Constant)) else 0
            block.insert(at, ast.copy_location(tick, block[0]))


def instrument(tree: ast.Module) -> ast.Module:
    """The metered version of a validated contract (a new tree; the input is consumed)."""
    compute_block_charges(tree)
    out = Instrumenter().visit(tree)
    return ast.fix_missing_locations(out)


def compute_statement_lines(tree: ast.Module) -> tuple[int, ...]:
    """For each source line, the first line of the innermost statement that contains it (0 outside any).

    Error messages name this line, not the interpreter's own: which line of a multi-line statement CPython
    attributes an instruction to has changed between versions, the statement that holds it has not."""
    last = max((getattr(n, "end_lineno", 0) or 0 for n in ast.walk(tree)), default=0)
    lines = [0] * (last + 2)
    for node in ast.walk(tree):  # breadth first: inner statements are visited after, and override, outer ones
        if isinstance(node, ast.stmt):
            end = node.end_lineno or node.lineno
            if isinstance(node, ast.FunctionDef | ast.If | ast.For | ast.While):
                end = node.lineno  # the header only; the body's statements claim their own lines
                first_body = node.body[0].lineno if node.body else end
                end = max(end, first_body - 1)
            for ln in range(node.lineno, end + 1):
                lines[ln] = node.lineno
    return tuple(lines)
