"""The simulated application: block values that name their height and parent, so validity is a real check.

A value is `b"<height>|<parent id hex>|<proposer index>|<nonce>"`; it is valid at height h on a chain whose tip has id
p iff it names h and p. Byzantine proposers can make values with a wrong parent: correct nodes must refuse them and
the validity checker must never see one decided."""

from __future__ import annotations

from qilian.consensus import compute_value_id

GENESIS_ID = compute_value_id(b"qilian-sim-genesis")
"""id of the (virtual) block at height 0."""


def make_value(height: int, parent_id: bytes, proposer: int, nonce: int) -> bytes:
    """A value for `height` on top of `parent_id`."""
    return b"%d|%s|%d|%d" % (height, parent_id.hex().encode(), proposer, nonce)


def parse_value(value: bytes) -> tuple[int, bytes, int, int] | None:
    """(height, parent id, proposer index, nonce), or None if the value is malformed."""
    parts = value.split(b"|")
    if len(parts) != 4:
        return None
    try:
        return int(parts[0]), bytes.fromhex(parts[1].decode()), int(parts[2]), int(parts[3])
    except ValueError:
        return None


def is_valid_value(value: bytes, height: int, parent_id: bytes) -> bool:
    """valid(v) of the paper for the simulated application."""
    parsed = parse_value(value)
    return parsed is not None and parsed[0] == height and parsed[1] == parent_id
