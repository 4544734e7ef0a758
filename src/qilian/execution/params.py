"""Chain parameters as governed state: fuel prices and block limits, in force from a stated height.

Genesis sets every limit; from then on the consortium changes them with the ``chain.set_params`` action (policy
``chain.set_params``, MAJORITY of the organisations' admins by default), never beyond the **hard bounds** below —
code constants, because the transport, the WAL and the receipt budget are sized for them, and because a price
below the measured CPU cost would let a block's fuel budget stop bounding its execution time.

A change is scheduled, not applied at once: it names the height it applies from (at least two blocks after the
executing one, so the proposer of every block and every validator checking it already hold the state that
schedules it). State (``sys:param``): each parameter in force under its name; ``chain.pending`` → the scheduled
changes ``[[height, {name: value}], …]`` in height order, promoted into the named entries at the beginning of their
block. The values in force at height h are therefore a pure function of *any* state from h−2 on
(:func:`get_chain_params`): execution reads them from the parent's state at the beginning of block h,
``check_block`` from the parent's state, block assembly from the tip's — all agree, on every node, at the same
height. Each value has a state proof (``GET /gov/params``).

Pure code: the state comes in as a ``get(namespace, key)`` callable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from qilian.contracts import DEFAULT_FUEL, DEFAULT_PRICES, FuelPrices
from qilian.execution.contracts import MAX_BLOCK_FUEL
from qilian.execution.members import PARAM_NAMESPACE
from qilian.types.codec import decode_raw, encode_trusted
from qilian.types.core import MAX_BLOCK_TXS_BOUND, ChainParams

StateGet = Callable[[str, bytes], bytes | None]

PENDING_KEY: Final = b"chain.pending"
"""Key under ``sys:param`` of the scheduled changes."""
MIN_ACTIVATION_DELAY: Final = 2
"""A change executed in block h applies from h + 2 at the earliest: block h + 1 may already be proposed and
checked against the state before h."""
MAX_ACTIVATION_DELAY: Final = 100_000
"""Latest a change may be scheduled, in blocks past the executing one (bounds how long it sits in state)."""
MAX_PENDING_CHANGES: Final = 16
"""Scheduled changes at once (each one read by every block check until it applies)."""
MAX_BLOCK_BYTES_BOUND: Final = 14 * 1024 * 1024
"""Hard upper bound of ``block.max_bytes``: a maximum block with its commit must fit one P2P frame (16 MiB; the
shell asserts it at import, shell/limits.py)."""
BLOCK_BYTES_MARGIN: Final = 64 * 1024
"""``block.max_bytes`` must exceed the genesis ``max_tx_bytes`` by at least this (the header, the last commit):
a block must be able to hold the largest transaction."""
MAX_BLOCK_FUEL_BOUND: Final = 20_000_000
"""Hard upper bound of ``block.max_fuel``: 20M fuel is ~4.8 s of CPU at the worst-priced operation on the reference
machine (``qilian bench fuel``, docs/contracts.md) — inside the 5 s a block's execution may take."""
MAX_PRICE_FACTOR: Final = 100
"""A governed price may be raised to at most this many times its calibrated default (and never lowered below
it: the defaults are what ``qilian bench fuel`` measured the work to cost)."""


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One governed chain parameter."""

    name: str
    """Its name in actions and state (``block.max_txs`` …)."""
    low: int
    """Smallest value allowed (inclusive)."""
    high: int
    """Largest value allowed (inclusive): a hard bound, a code constant."""
    doc: str
    """What it limits (for refusals and ``GET /gov/params``)."""


@dataclass(frozen=True, slots=True)
class ChainLimits:
    """The governed parameters in force at one height."""

    max_block_txs: int
    """Most transactions in a block (``block.max_txs``)."""
    max_block_bytes: int
    """Largest encoded block (``block.max_bytes``)."""
    max_block_fuel: int
    """Fuel all contract calls of a block may spend together (``block.max_fuel``)."""
    prices: FuelPrices
    """Contract fuel prices (``fuel.*``)."""

    def to_chain_params(self, genesis: ChainParams) -> ChainParams:
        """Genesis's params with the governed block limits in force (what the block checks take)."""
        return ChainParams(genesis.block_interval_ms, genesis.create_empty_blocks, self.max_block_txs,
                           self.max_block_bytes, genesis.max_tx_bytes, genesis.tx_validity_blocks)

    def to_value(self) -> dict[str, int]:
        """Name → value of every governed parameter."""
        return {"block.max_txs": self.max_block_txs, "block.max_bytes": self.max_block_bytes,
                "block.max_fuel": self.max_block_fuel,
                **{f"fuel.{f.name}": getattr(self.prices, f.name) for f in fields(FuelPrices)}}


def get_param_specs(genesis: ChainParams) -> Mapping[str, ParamSpec]:
    """Every governed parameter with its bounds (``block.max_bytes``'s floor depends on the genesis's
    max_tx_bytes, fixed for the chain's life)."""
    specs = [
        ParamSpec("block.max_txs", 1, MAX_BLOCK_TXS_BOUND, "transactions per block"),
        ParamSpec("block.max_bytes", genesis.max_tx_bytes + BLOCK_BYTES_MARGIN, MAX_BLOCK_BYTES_BOUND,
                  "encoded bytes per block"),
        ParamSpec("block.max_fuel", DEFAULT_FUEL, MAX_BLOCK_FUEL_BOUND, "contract fuel per block"),
    ]
    for f in fields(FuelPrices):
        default = getattr(DEFAULT_PRICES, f.name)
        specs.append(ParamSpec(f"fuel.{f.name}", default, default * MAX_PRICE_FACTOR, f"fuel price of {f.name}"))
    return {s.name: s for s in specs}


class ParamError(ValueError):
    """A parameter change that is not allowed; the message names the parameter and its bounds."""


def compute_param_changes(genesis: ChainParams, value: Any) -> dict[str, int]:
    """Check a ``{name: value}`` map of changes: known names, integers within the hard bounds, at least one.
    Raises ParamError naming the first problem."""
    specs = get_param_specs(genesis)
    if type(value) is not dict or not value:
        raise ParamError(f"parameter changes are a non-empty map of name → integer; parameters: {', '.join(specs)}")
    out: dict[str, int] = {}
    for name in sorted(value):
        spec = specs.get(name) if type(name) is str else None
        if spec is None:
            raise ParamError(f"unknown parameter {name!r}; parameters: {', '.join(specs)}")
        v = value[name]
        if type(v) is not int or not spec.low <= v <= spec.high:
            raise ParamError(f"{name} ({spec.doc}) must be an integer {spec.low}..{spec.high} (hard bounds), "
                             f"got {v!r}")
        out[name] = v
    return out


def get_pending_changes(state: StateGet) -> list[tuple[int, dict[str, int]]]:
    """The scheduled changes, in height order."""
    raw = state(PARAM_NAMESPACE, PENDING_KEY)
    return [] if raw is None else [(h, dict(c)) for h, c in decode_raw(raw)]


def encode_pending_changes(changes: list[tuple[int, dict[str, int]]]) -> bytes | None:
    """The stored form of the scheduled changes (None: none left, the entry is deleted)."""
    return encode_trusted([[h, c] for h, c in changes]) if changes else None


def get_chain_limits(genesis: ChainParams, state: StateGet, height: int) -> ChainLimits:
    """The parameters in force at ``height``, from a state of height − 2 or later: each parameter's stored value
    (else genesis's), overlaid with the scheduled changes due by ``height``."""
    values: dict[str, int] = {
        "block.max_txs": genesis.max_block_txs, "block.max_bytes": genesis.max_block_bytes,
        "block.max_fuel": MAX_BLOCK_FUEL,
        **{f"fuel.{f.name}": getattr(DEFAULT_PRICES, f.name) for f in fields(FuelPrices)},
    }
    for name in values:
        raw = state(PARAM_NAMESPACE, name.encode())
        if raw is not None:
            values[name] = int(decode_raw(raw))
    for h, changes in get_pending_changes(state):
        if h <= height:
            values.update(changes)
    prices = FuelPrices(**{f.name: values[f"fuel.{f.name}"] for f in fields(FuelPrices)})
    return ChainLimits(values["block.max_txs"], values["block.max_bytes"], values["block.max_fuel"], prices)


def get_chain_params(genesis: ChainParams, state: StateGet, height: int) -> ChainParams:
    """The block limits in force at ``height`` as a ChainParams (genesis's, with the governed ones applied)."""
    return get_chain_limits(genesis, state, height).to_chain_params(genesis)


__all__ = [
    "BLOCK_BYTES_MARGIN",
    "MAX_ACTIVATION_DELAY",
    "MAX_BLOCK_BYTES_BOUND",
    "MAX_BLOCK_FUEL_BOUND",
    "MAX_PENDING_CHANGES",
    "MAX_PRICE_FACTOR",
    "MIN_ACTIVATION_DELAY",
    "PENDING_KEY",
    "ChainLimits",
    "ParamError",
    "ParamSpec",
    "compute_param_changes",
    "encode_pending_changes",
    "get_chain_limits",
    "get_chain_params",
    "get_param_specs",
    "get_pending_changes",
]
