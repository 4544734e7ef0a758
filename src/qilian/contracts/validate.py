"""Deploy-time validation: the contract language is a small, whitelisted subset of Python.

Everything not listed here is refused, with the line and the rule. The whitelist is what makes the sandbox: with no
names or attributes that start with ``_`` (no dunders), no attribute outside ATTRIBUTES, no import outside the
contract standard library, no classes, no try/raise/with/yield/async/global, no floats, no sets and no star
unpacking, contract code has no path to the interpreter's objects — the runtime guards (instrument.py, runtime.py)
then bound what the remaining operations may cost."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Final

MAX_SOURCE_BYTES: Final = 64 * 1024
"""Largest contract source."""
MAX_AST_DEPTH: Final = 40
"""Deepest nesting of expressions and statements."""
MAX_FSTRING_FIELDS: Final = 8
"""Most ``{…}`` fields in one f-string (each is bounded in size; so is their sum)."""

ALLOWED_NODES: Final = frozenset({
    ast.Module, ast.FunctionDef, ast.arguments, ast.arg, ast.Return, ast.Assign, ast.AugAssign, ast.AnnAssign,
    ast.If, ast.For, ast.While, ast.Break, ast.Continue, ast.Pass, ast.Expr, ast.Assert, ast.Delete,
    ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Call, ast.IfExp, ast.Dict, ast.List, ast.Tuple,
    ast.ListComp, ast.DictComp, ast.comprehension, ast.Subscript, ast.Slice, ast.Name, ast.Load, ast.Store,
    ast.Del, ast.Constant, ast.keyword, ast.Attribute, ast.JoinedStr, ast.FormattedValue,
    ast.ImportFrom, ast.alias,
    ast.And, ast.Or, ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift,
    ast.BitOr, ast.BitXor, ast.BitAnd, ast.Invert, ast.Not, ast.UAdd, ast.USub, ast.Eq, ast.NotEq, ast.Lt,
    ast.LtE, ast.Gt, ast.GtE, ast.Is, ast.IsNot, ast.In, ast.NotIn,
})
"""Syntax a contract may use. Notably absent: classes, try/raise/with, yield/await/async, global/nonlocal,
generator expressions and set displays/comprehensions, walrus, star unpacking, true division, matmul, imports
other than ``from std import …``."""

WHY_REFUSED: Final = {
    ast.ClassDef: "class", ast.Try: "try", ast.Raise: "raise", ast.With: "with", ast.AsyncFunctionDef: "async",
    ast.AsyncFor: "async", ast.AsyncWith: "async", ast.Await: "async", ast.Yield: "yield",
    ast.YieldFrom: "yield", ast.Global: "global", ast.Nonlocal: "global", ast.GeneratorExp: "generator",
    ast.Set: "set", ast.SetComp: "set", ast.NamedExpr: "walrus", ast.Starred: "star", ast.Div: "float",
    ast.MatMult: "operator", ast.Import: "import", ast.Lambda: "lambda",
}
"""Rule names for syntax refused on purpose (others are refused as ``syntax``)."""

BUILTINS: Final = frozenset({
    "len", "range", "min", "max", "sum", "abs", "divmod", "str", "int", "bool", "bytes", "list", "dict",
    "tuple", "enumerate", "zip", "sorted", "reversed", "isinstance", "any", "all", "chr", "ord", "hex",
    "True", "False", "None",
})
"""Built-in names a contract may use (each is a guarded replacement, see runtime.SAFE_BUILTINS)."""

API_NAMES: Final = frozenset({"export", "Variable", "Hash", "ctx", "emit", "call"})
"""The contract API, available without import."""
STORAGE_DECLARATIONS: Final = frozenset({"export", "Variable", "Hash"})
"""API names used only while the module is instantiated (storage is declared once, at module level)."""
IDENTITY_CONSTANTS: Final = (None, True, False)
"""``is``/``is not`` compare only with these: the identity of ints and strings differs between CPython versions."""

STD_MODULE: Final = "std"
"""The contract standard library: ``from std import sha3, hash_hex, encode, decode, Fixed``."""
STD_NAMES: Final = frozenset({"digest", "digest_hex", "encode", "decode", "Fixed"})

FORBIDDEN_NAMES: Final = frozenset({
    "exec", "eval", "compile", "open", "globals", "locals", "vars", "getattr", "setattr", "delattr", "hasattr",
    "type", "super", "object", "id", "hash", "input", "print", "memoryview", "bytearray", "classmethod",
    "staticmethod", "property", "dir", "help", "breakpoint", "exit", "quit", "iter", "next", "float", "complex",
    "set", "frozenset", "format", "repr", "ascii", "callable", "issubclass", "slice", "filter", "map",
    "license", "credits", "copyright", "round", "pow", "Exception", "BaseException",
})
"""Names refused with their own rule (they reach the interpreter, or differ between nodes)."""

ATTRIBUTES: Final = frozenset({
    # str / bytes
    "lower", "upper", "strip", "lstrip", "rstrip", "split", "startswith", "endswith", "find", "count", "join",
    "replace", "encode", "decode", "isdigit", "isalpha", "isalnum", "hex", "fromhex", "title", "capitalize",
    # list
    "append", "pop", "insert", "index", "sort", "reverse", "extend", "copy", "remove", "clear",
    # dict
    "get", "keys", "values", "items", "setdefault", "update",
    # the contract API
    "set", "sender", "org", "height", "time_ms", "tx_hash", "this", "caller", "signer",
    # std.Fixed
    "add", "sub", "mul", "div", "to_str", "units",
})
"""Attribute names a contract may use. ``format``/``format_map`` (attribute lookups in format strings), anything
starting with ``_`` and every frame/code/generator attribute are absent by construction."""

ARG_TYPES: Final = frozenset({"int", "str", "bytes", "bool", "list", "dict", "Any"})
"""Annotations allowed on exported functions' parameters (documentation; values are checked as codec values)."""


class ContractRejected(ValueError):
    """A contract the chain will not deploy: names the line and the rule.

    ``str()`` is what a deployment's receipt carries, so it is composed only of facts every supported interpreter
    agrees on; ``detail`` may hold the interpreter's own explanation (a parser message), for people only — the CLI
    shows it, the chain never records it."""

    def __init__(self, line: int, rule: str, message: str, detail: str = ""):
        super().__init__(f"line {line}: [{rule}] {message}")
        self.line = line
        self.rule = rule
        self.message = message
        self.detail = detail


GRAMMAR: Final = (3, 11)
"""The Python grammar contracts are written in, whatever CPython runs the node (docs/contracts.md, "Why a contract
cannot depend on the interpreter")."""
SYNTAX_MESSAGE: Final = "the source is not valid contract syntax (the Python 3.11 grammar)"
"""The one on-chain text of every parse failure: where and why a parser gives up differs between CPython
versions, so neither is recorded."""


def _syntax_error(detail: str) -> ContractRejected:
    return ContractRejected(0, "syntax", SYNTAX_MESSAGE, detail)


def is_pinned_string_syntax(segment: str) -> bool:
    """Whether the string literal tokens in ``segment`` (one string expression: adjacent literals, possibly with
    whitespace and comments between them) mean the same under every supported CPython.

    Two things do not: f-strings that use PEP 701 (3.12+: the enclosing quote, backslashes, comments or line
    breaks inside a replacement field — 3.11 rejects them, later versions accept them), and ``\\N{name}``
    escapes (resolved against the interpreter's Unicode database, which grows between versions). Refusing both
    in every version makes the set of accepted sources, and what they mean, the same everywhere. Bounded work:
    one pass over the segment."""
    i, n = 0, len(segment)
    while i < n:
        c = segment[i]
        if c in " \t\r\n\f":
            i += 1
            continue
        if c == "\\" and segment[i + 1:i + 2] == "\n":
            i += 2
            continue
        if c == "#":
            j = segment.find("\n", i)
            i = n if j < 0 else j
            continue
        j = i
        while j < n and segment[j] in "rRbBuUfF":
            j += 1
        prefix = segment[i:j].lower()
        if j >= n or segment[j] not in "'\"":
            return False
        q = segment[j]
        quote = q * 3 if segment[j:j + 3] == q * 3 else q
        k = j + len(quote)
        is_f, is_raw, is_bytes = "f" in prefix, "r" in prefix, "b" in prefix
        depth = 0
        while True:
            if k >= n:
                return False
            ch = segment[k]
            if depth == 0:
                if segment.startswith(quote, k):
                    k += len(quote)
                    break
                if ch == "\\":
                    if segment[k + 1:k + 3] == "N{" and not is_raw and not is_bytes:
                        return False
                    k += 2
                    continue
                if ch == "\n" and len(quote) == 1:
                    return False
                if is_f and ch == "{":
                    if segment[k + 1:k + 2] == "{":
                        k += 2
                        continue
                    depth = 1
                elif is_f and ch == "}":
                    if segment[k + 1:k + 2] != "}":
                        return False
                    k += 1
                k += 1
            else:
                if ch in "\\#\n" or ch == q:
                    return False
                if ch in "{[(":
                    depth += 1
                elif ch in "}])":
                    depth -= 1
                k += 1
        i = k
    return True


def _check_pinned_strings(source: str, tree: ast.Module) -> None:
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            inner.update(id(v) for v in ast.walk(node) if v is not node)
    for node in ast.walk(tree):
        if id(node) in inner:
            continue
        if isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and type(node.value) in (str, bytes)):
            segment = ast.get_source_segment(source, node)
            if segment is None or not is_pinned_string_syntax(segment):
                raise _syntax_error(f"line {_line(node)}: f-string fields may not contain the string's own quote, "
                                    f"backslashes, comments or line breaks, and \\N{{…}} escapes are not allowed")


@dataclass(frozen=True, slots=True)
class ContractInfo:
    """What validation learned about a contract."""

    exports: tuple[str, ...]
    """Exported function names, in source order."""
    storage: tuple[str, ...]
    """Module-level storage declarations (Variable / Hash), in source order."""


def is_plain_text(s: str) -> bool:
    """Whether ``s`` is valid Unicode text (no lone surrogates): the only text that encodes to UTF-8, so the only
    text the codec, receipts and other nodes can carry."""
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_constant_default(node: ast.expr) -> bool:
    """Immutable literals only: a default is evaluated once, so a list or dict default would carry one call's
    changes into the next (and out of a rolled-back transaction)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
        return isinstance(node, ast.Constant) and type(node.value) is int
    return isinstance(node, ast.Constant) and (node.value is None or type(node.value) in (bool, int, str, bytes))


def _line(node: ast.AST) -> int:
    return int(getattr(node, "lineno", 0))


def _check_name(name: str, node: ast.AST, what: str) -> None:
    if name.startswith("_"):
        raise ContractRejected(_line(node), "underscore", f"{what} {name!r}: names starting with '_' are reserved")
    if name in FORBIDDEN_NAMES:
        raise ContractRejected(_line(node), "forbidden-name", f"{name!r} is not available to contracts")
    if not name.isascii():
        raise ContractRejected(_line(node), "non-ascii", f"{what} {name!r}: identifiers must be ASCII")


def validate_source(source: str) -> tuple[ast.Module, ContractInfo]:
    """Parse and check a contract; raises ContractRejected naming the first offending line and rule."""
    if len(source.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise ContractRejected(0, "too-large", f"source is over {MAX_SOURCE_BYTES} bytes")
    if "\x00" in source:
        raise ContractRejected(0, "syntax", "source contains a NUL character")
    if not is_plain_text(source):
        raise ContractRejected(0, "encoding", "source contains lone surrogates (sources are UTF-8)")
    first = source.split("\n", 2)[:2]
    if any("coding" in ln and ln.lstrip().startswith("#") for ln in first):
        raise ContractRejected(1, "encoding", "encoding declarations are not allowed (sources are UTF-8)")
    try:
        tree = ast.parse(source, mode="exec", type_comments=False, feature_version=GRAMMAR)
    except SyntaxError as exc:
        raise _syntax_error(f"line {exc.lineno}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise _syntax_error(f"the parser gave up: {type(exc).__name__}") from None
    _check_pinned_strings(source, tree)
    _check_depth(tree)
    exports: list[str] = []
    storage: list[str] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            raise ContractRejected(_line(stmt), "import", f"only `from {STD_MODULE} import …` is allowed")
        if isinstance(stmt, ast.ImportFrom):
            if stmt.module != STD_MODULE or stmt.level != 0:
                raise ContractRejected(_line(stmt), "import", f"only `from {STD_MODULE} import …` is allowed")
            for a in stmt.names:
                if a.name not in STD_NAMES or (a.asname is not None and a.asname != a.name):
                    raise ContractRejected(_line(stmt), "import", f"{STD_MODULE} has no {a.name!r} (or it was "
                                                                  f"renamed); it offers {sorted(STD_NAMES)}")
        elif isinstance(stmt, ast.FunctionDef):
            _check_function(stmt, exports)
        elif isinstance(stmt, ast.Assign | ast.AnnAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            value = stmt.value
            if (len(targets) != 1 or not isinstance(targets[0], ast.Name) or not isinstance(value, ast.Call)
                    or not isinstance(value.func, ast.Name) or value.func.id not in ("Variable", "Hash")):
                raise ContractRejected(_line(stmt), "module-level",
                                       "at module level only `name = Variable(…)` or `name = Hash(…)` is allowed "
                                       "(module globals are not persistent: use storage)")
            storage.append(targets[0].id)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value,
                                                                                                 str):
            pass  # a docstring
        else:
            raise ContractRejected(_line(stmt), WHY_REFUSED.get(type(stmt), "module-level"),
                                   f"{type(stmt).__name__} is not allowed at module level (only std imports, "
                                   f"storage and functions)")
    _walk(tree)
    if not exports:
        raise ContractRejected(1, "no-exports", "a contract needs at least one @export function")
    if len(set(storage)) != len(storage):
        raise ContractRejected(1, "duplicate", "a storage name is declared twice")
    return tree, ContractInfo(tuple(exports), tuple(storage))


def _check_depth(tree: ast.AST) -> None:
    """Nesting beyond MAX_AST_DEPTH is reported exactly as a parse failure: very deep sources are where CPython
    versions' parsers differ (one builds the tree, another runs out of stack), so both outcomes must read the
    same on chain."""
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, d = stack.pop()
        if d > MAX_AST_DEPTH:
            raise _syntax_error(f"line {_line(node)}: nesting deeper than {MAX_AST_DEPTH}")
        stack.extend((c, d + 1) for c in ast.iter_child_nodes(node))


def _check_function(fn: ast.FunctionDef, exports: list[str]) -> None:
    _check_name(fn.name, fn, "function")
    if fn.name in BUILTINS or fn.name in API_NAMES or fn.name in STD_NAMES:
        raise ContractRejected(_line(fn), "shadowing", f"function {fn.name!r} would hide a built-in")
    exported = False
    for dec in fn.decorator_list:
        if isinstance(dec, ast.Name) and dec.id == "export":
            exported = True
        else:
            raise ContractRejected(_line(dec), "decorator", "the only decorator is @export")
    a = fn.args
    if a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs or a.kw_defaults:
        raise ContractRejected(_line(fn), "signature", "parameters are plain positional names (with defaults)")
    for d in a.defaults:
        if not _is_constant_default(d):
            raise ContractRejected(_line(d), "mutable-default", "parameter defaults are None, bool, int, str or "
                                                                "bytes literals")
    for sub in ast.walk(ast.Module(body=fn.body, type_ignores=[])):
        if isinstance(sub, ast.Name) and sub.id in STORAGE_DECLARATIONS:
            raise ContractRejected(_line(sub), "storage-declaration",
                                   f"{sub.id} is declared at module level only (`name = {sub.id}(…)`)")
    if exported:
        exports.append(fn.name)


def _walk(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        t = type(node)
        if t not in ALLOWED_NODES:
            rule = WHY_REFUSED.get(t, "syntax")
            raise ContractRejected(_line(node), rule, f"{t.__name__} is not part of the contract language")
        if isinstance(node, ast.Name):
            _check_name(node.id, node, "name")
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                raise ContractRejected(_line(node), "underscore", f"attribute {node.attr!r} is reserved")
            if node.attr not in ATTRIBUTES:
                raise ContractRejected(_line(node), "attribute", f"attribute {node.attr!r} is not available "
                                                                 f"(allowed: see docs/contracts.md)")
        elif isinstance(node, ast.arg):
            _check_name(node.arg, node, "parameter")
        elif isinstance(node, ast.keyword):
            if node.arg is None:
                raise ContractRejected(_line(node), "star", "**keyword unpacking is not allowed")
            _check_name(node.arg, node, "keyword")
        elif isinstance(node, ast.Constant):
            if type(node.value) is str and not is_plain_text(node.value):
                raise ContractRejected(_line(node), "encoding", "text literals cannot hold lone surrogates")
            if isinstance(node.value, float | complex):
                raise ContractRejected(_line(node), "float", "floating-point numbers differ between machines; "
                                                             "use int or std.Fixed")
            if node.value is Ellipsis:
                raise ContractRejected(_line(node), "syntax", "... is not allowed")
        elif isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                raise ContractRejected(_line(node), "star", "**dict unpacking is not allowed")
        elif isinstance(node, ast.JoinedStr):
            fields = [v for v in node.values if isinstance(v, ast.FormattedValue)]
            if len(fields) > MAX_FSTRING_FIELDS:
                raise ContractRejected(_line(node), "fstring", f"more than {MAX_FSTRING_FIELDS} fields in an "
                                                               f"f-string")
            for f in fields:
                if f.format_spec is not None or f.conversion != -1:
                    raise ContractRejected(_line(node), "fstring", "format specs and !r/!s/!a conversions are not "
                                                                   "allowed in f-strings")
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for i, op in enumerate(node.ops):
                if isinstance(op, ast.Is | ast.IsNot) and not any(
                        isinstance(x, ast.Constant) and any(x.value is c for c in IDENTITY_CONSTANTS)
                        for x in operands[i:i + 2]):
                    raise ContractRejected(_line(node), "identity", "`is` compares with None, True or False only "
                                                                    "(use == for values)")
        elif isinstance(node, ast.For | ast.comprehension):
            if any(isinstance(sub, ast.Subscript) for sub in ast.walk(node.target)):
                raise ContractRejected(_line(node), "subscript-target", "loop targets are names")
        elif isinstance(node, ast.FunctionDef) and node is not tree and node not in getattr(tree, "body", []):
            raise ContractRejected(_line(node), "nested-function", "functions are defined at module level only")
        elif isinstance(node, ast.AugAssign) and not isinstance(node.target, ast.Name | ast.Subscript):
            raise ContractRejected(_line(node), "syntax", "augmented assignment to an attribute is not allowed")
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Subscript) and isinstance(
                node.target.slice, ast.Slice):
            raise ContractRejected(_line(node), "subscript-target", "augmented assignment to a slice is not allowed")
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.Delete):
            targets = (node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target])
            single = isinstance(node, ast.Delete) or (isinstance(node, ast.Assign) and len(targets) == 1) or (
                isinstance(node, ast.AnnAssign) and node.value is not None)
            for tg in targets:
                nested = [sub for sub in ast.walk(tg) if isinstance(sub, ast.Subscript) and sub is not tg]
                if (isinstance(tg, ast.Subscript) and not single) or any(
                        isinstance(sub.ctx, ast.Store | ast.Del) for sub in nested):
                    raise ContractRejected(_line(node), "subscript-target", "assign or delete one subscript per "
                                                                            "statement: `d[k] = v`")
                for sub in ast.walk(tg):
                    if isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store | ast.Del):
                        raise ContractRejected(_line(node), "attribute-write", "contracts cannot set or delete "
                                                                              "attributes")
