"""Text that goes into receipts — and so into the receipts root every validator must agree on.

Receipt text is consensus data: the same block must give the same bytes on every node, whatever the CPython
version. Two things would break that: interpreter-composed text (exception messages, ``repr``), and Unicode
tables, which decide what ``repr`` escapes and change between CPython versions. So every receipt message passes
through :func:`compute_receipt_error`, which keeps printable ASCII and writes everything else as an escape chosen
by code point alone (``\\xNN``, ``\\uNNNN``, ``\\UNNNNNNNN`` — the forms ``repr`` uses, so a message that went
through ``repr`` on either side of a table change comes out the same), and bounds the length. Names taken from a
transaction are shown with :func:`quote`, never ``!r``."""

from __future__ import annotations

from typing import Final

MAX_RECEIPT_ERROR: Final = 512
"""Longest error text a receipt carries (characters, all ASCII)."""
MAX_QUOTED: Final = 64
"""Longest user-supplied name shown in a message."""


def compute_ascii_escaped(text: str) -> str:
    """``text`` with every character outside printable ASCII written as an escape that depends only on its code
    point; backslashes are doubled so the result reads back unambiguously."""
    out = []
    for ch in text:
        c = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0x20 <= c < 0x7F:
            out.append(ch)
        elif c < 0x100:
            out.append(f"\\x{c:02x}")
        elif c < 0x10000:
            out.append(f"\\u{c:04x}")
        else:
            out.append(f"\\U{c:08x}")
    return "".join(out)


def quote(name: object) -> str:
    """A user-supplied name for a receipt message: bounded, ASCII-escaped, in single quotes."""
    text = name if type(name) is str else f"<{type(name).__name__}>"
    return "'" + compute_ascii_escaped(text[:MAX_QUOTED]).replace("'", "\\'") + "'" + \
        ("..." if len(text) > MAX_QUOTED else "")


def compute_receipt_error(text: str) -> str:
    """The error text a receipt carries: printable ASCII only, at most MAX_RECEIPT_ERROR characters.

    Printable ASCII (backslashes included) is kept as it is and every other character becomes its code-point
    escape, so ``repr`` text that one CPython escaped and another left literal comes out identical; the cut is by
    characters of the escaped form, a rule that depends on nothing but the text."""
    head = text[: 4 * MAX_RECEIPT_ERROR]
    escaped = "".join(ch if 0x20 <= ord(ch) < 0x7F else compute_ascii_escaped(ch) for ch in head)
    if len(escaped) > MAX_RECEIPT_ERROR:
        escaped = escaped[: MAX_RECEIPT_ERROR - 3] + "..."
    return escaped
