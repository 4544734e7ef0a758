"""Hostile contracts by fault class (issue 12), written as an outside attacker would, each with the precise outcome
the sandbox must give: the error code (``None``: the call succeeds with ``value``), or the deploy rule that refuses
it. Shared by test_hostile_classes.py and its determinism check in subprocesses."""

from __future__ import annotations

from typing import Any, Final, NamedTuple


class Case(NamedTuple):
    name: str
    source: str
    code: str | None
    """Expected error code; None if the call must succeed."""
    value: Any = None
    """Expected return value when it succeeds."""
    rule: str | None = None
    """Expected deploy rejection rule instead of a run."""
    args: tuple[Any, ...] = ()


def _fn(body: str, params: str = "", head: str = "") -> str:
    lines = "\n".join("    " + ln for ln in body.strip("\n").split("\n"))
    return f"{head}@export\ndef attack({params}):\n{lines}\n"


CASES: Final[tuple[Case, ...]] = (
    # -- class 1: one boundary ------------------------------------------------------------------------------------
    Case("return-storage-object", _fn("return h", head="h = Hash()\n"), "codec"),
    Case("return-function", _fn("return attack"), "codec"),
    Case("return-fixed", _fn("return Fixed(1)", head="from std import Fixed\n"), "codec"),
    Case("cross-call-leaks-storage", "h = Hash()\n@export\ndef leak():\n    return h\n"
         + _fn("g = call(ctx.this, 'leak')\ng['x'] = 1\nreturn 1"), "codec"),
    Case("cross-call-passes-function", "@export\ndef take(f):\n    return 1\n"
         + _fn("return call(ctx.this, 'take', attack)"), "codec"),
    Case("huge-return-shared-rows", _fn("row = [0] * 60000\nreturn [row] * 60000"), "limit"),
    Case("return-over-64k", _fn("return ['x' * 40000, 'y' * 40000]"), "limit"),
    Case("deep-tuple-dict-key", _fn("t = ()\nfor i in range(300000):\n    t = (t,)\nd = {}\nd[t] = 1\nreturn 1"),
         "type"),
    Case("deep-tuple-in-dict", _fn("t = ()\nfor i in range(300000):\n    t = (t,)\nreturn t in {}"), "type"),
    Case("deep-tuple-dict-get", _fn("t = ()\nfor i in range(300000):\n    t = (t,)\nreturn {}.get(t)"), "type"),
    Case("deep-list-compare", _fn("a = []\nb = []\nfor i in range(100000):\n    a = [a]\n    b = [b]\n"
                                  "return a == b"), "limit"),
    Case("deep-list-sort", _fn("a = []\nfor i in range(100000):\n    a = [a]\nreturn sorted([a, a]) == []"),
         "limit"),
    Case("deep-list-return", _fn("a = []\nfor i in range(40):\n    a = [a]\nreturn a"), "limit"),
    Case("deep-list-emit", _fn("a = []\nfor i in range(40):\n    a = [a]\nemit('E', a)"), "limit"),
    Case("encode-268mb", _fn("row = [0] * 65536\nreturn len(encode([row] * 65536))",
                             head="from std import encode\n"), "limit"),
    Case("decode-float", _fn("return decode(b'\\xcb' + bytes(8))", head="from std import decode\n"), "std"),
    Case("event-name-surrogate", _fn("emit(chr(65) * 200, 1)"), "type"),
    # -- class 2: deterministic errors ----------------------------------------------------------------------------
    Case("keyerror-function-repr", _fn("return {}[attack]"), "type"),
    Case("keyerror-plain", _fn("return {'a': 1}['b']"), "key"),
    Case("assert-ctx-object", _fn("assert False, ctx"), "assertion"),
    Case("assert-lone-surrogate", _fn("assert False, chr(55296)"), "value"),
    Case("assert-huge-message", _fn("assert False, 'm' * 65000"), "assertion"),
    Case("assert-deep-message", _fn("a = []\nfor i in range(100000):\n    a = [a]\nassert False, a"),
         "assertion"),
    Case("max-empty", _fn("return max([])"), "value"),
    Case("index-error", _fn("return [][5]"), "index"),
    Case("zero-division", _fn("return 1 // 0"), "zero_division"),
    Case("len-huge-range", _fn("return len(range(2 ** 100))"), "arithmetic"),
    Case("int-overflow-index", _fn("return [1][2 ** 100]"), "index"),
    Case("wrong-arity", _fn("return 1", params="a, b"), "type", args=(1,)),
    # -- class 3: determinism by construction ---------------------------------------------------------------------
    Case("dict-views-and", _fn("d = {'a': 1, 'b': 2}\ne = {'b': 1, 'c': 2}\nreturn d.keys() & e.keys()"), "type"),
    Case("dict-views-or-pop", _fn("d = {'a': 1}\ne = {'b': 1}\nreturn (d.keys() | e.keys()).pop()"), "type"),
    Case("dict-views-are-lists", _fn("d = {'z': 1, 'a': 2}\nreturn [d.keys(), d.values(), d.items()]"), None,
         [["z", "a"], [1, 2], [["z", 1], ["a", 2]]]),
    Case("unicode-isalpha-pinned", _fn("return [chr(73476).isalpha(), 'é'.isalpha(), 'a'.isalpha()]"), None,
         [False, False, True]),
    Case("unicode-digits-pinned", _fn("return ['１２'.isdigit(), '٣'.isdigit(), '12'.isdigit()]"), None,
         [False, False, True]),
    Case("unicode-case-pinned", _fn("return ['éa'.upper(), 'ǅ'.lower(), 'ß'.upper(), 'ab cd'.title()]"), None,
         ["éA", "ǅ", "ß", "Ab Cd"]),
    Case("unicode-whitespace-pinned", _fn("return ['\\u2028a\\u3000'.strip(), 'a\\x1cb'.split()]"), None,
         ["\u2028a\u3000", ["a\x1cb"]]),
    Case("int-of-unicode-digits", _fn("return int('١٢')"), "value"),
    Case("fixed-of-unicode-digits", _fn("return Fixed('١٢').units", head="from std import Fixed\n"), "std"),
    Case("encode-codec-import", _fn("return 'x'.encode('idna')"), "value"),
    Case("decode-codec-import", _fn("return b'x'.decode('hex_codec')"), "value"),
    Case("encode-errors-handler", _fn("return 'x'.encode('utf-8', 'surrogateescape')"), "value"),
    Case("identity-of-ints", _fn("return 1000 is 1000"), None, rule="identity"),
    Case("identity-of-strings", _fn("a = 'x'\nreturn a is 'x'"), None, rule="identity"),
    Case("fstring-repr-conversion", _fn("return f'{\"é\"!r}'"), None, rule="fstring"),
    Case("surrogate-literal", _fn("return '\\ud800'"), None, rule="encoding"),
    Case("in-lazy-iterator", _fn("return 'a' in range(10 ** 12)"), "type"),
    Case("iterate-storage", _fn("for x in h:\n    pass", head="h = Hash()\n"), "type"),
    # -- class 5: storage declarations, defaults ------------------------------------------------------------------
    Case("hash-inside-function", _fn("h = Hash()\nh['a'] = 1"), None, rule="storage-declaration"),
    Case("variable-via-alias", _fn("return [Variable][0]()"), None, rule="storage-declaration"),
    Case("mutable-default-arg", _fn("x.append(1)\nreturn x", params="x=[]"), None, rule="mutable-default"),
    Case("hash-default-is-copied", _fn("v = h['a']\nv.append(1)\nreturn h['a']", head="h = Hash(default=[])\n"),
         None, []),
    Case("variable-default-is-copied", _fn("d = v.get()\nd['k'] = 1\nreturn v.get()",
                                           head="v = Variable(default={})\n"), None, {}),
    Case("tuple-target-subscript", _fn("d = {}\na, d['k'] = 1, 2"), None, rule="subscript-target"),
    # -- class 4: limits and prices that cannot be skipped --------------------------------------------------------
    Case("fstring-doubling", _fn("s = 'x'\nfor i in range(30):\n    s = f'{s}{s}'"), "limit"),
    Case("sum-lists-quadratic", _fn("return len(sum([[1] * 1000] * 1000, []))"), "limit"),
    Case("sum-range-uncharged", _fn("return sum(range(10 ** 12), 0)"), "limit"),
    Case("dict-or-bomb", _fn("a = {x: 1 for x in range(40000)}\nb = {-x - 1: 1 for x in range(40000)}\n"
                             "return len(a | b)"), "limit"),
    Case("extend-range", _fn("L = []\nL.extend(range(10 ** 7))"), "limit"),
    Case("slice-assign-range", _fn("L = []\nL[0:0] = range(10 ** 7)"), "limit"),
    Case("update-zip", _fn("d = {}\nd.update(zip(range(10 ** 7), range(10 ** 7)))"), "limit"),
    Case("keyword-skips-guard", _fn("s = 'a' * 60000\nreturn len(s.replace(old='a', new='bb'))"), "limit"),
    Case("keyword-join", _fn("return ','.join(iterable=['a'])"), "type"),
    Case("fixed-mul-bits", _fn("a = Fixed(units=2 ** 4000, places=0)\nreturn a.mul(a).units",
                               head="from std import Fixed\n"), "std"),
    Case("fixed-operator-bits", _fn("a = Fixed(units=2 ** 4000, places=0)\nreturn (a * a).units",
                                    head="from std import Fixed\n"), "std"),
    Case("pow-tower", _fn("return 7 ** 7 ** 7"), "limit"),
    Case("shift-bomb", _fn("return 1 << (1 << 40)"), "limit"),
    Case("int-text-bomb", _fn("return int('9' * 5000)"), "limit"),
    Case("in-list-priced", _fn("L = list(range(60000))\nn = 0\nwhile True:\n    n += -1 in L"), "out_of_fuel"),
    Case("straight-line-priced", _fn("x = 0\nwhile True:\n" + "".join(["    x = x\n"] * 200)), "out_of_fuel"),
    Case("bytes-hex-bomb", _fn("return len(bytes(60000).hex())"), "limit"),
    Case("events-total-bytes", _fn("for i in range(200):\n    emit('E', 'x' * 1000)"), "limit"),
    Case("zip-of-ranges-is-bounded", _fn("return len(zip(range(10 ** 12), [1, 2]))"), None, 2),
)
