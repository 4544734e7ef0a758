"""Payments and settlement as two built-in modules over one ledger: ``asset`` and ``settle``.

* ``asset`` — an organisation's admin creates an asset (symbol, decimals, optional supply cap); the issuer
  organisation mints and burns under policy ``asset.issue`` (SELF = the issuer); members transfer with a memo and
  grant allowances. Amounts are integers of minor units (no floats anywhere).
* ``settle`` — delivery versus payment (``swap``: party B's signed offer carried in party A's transaction, both legs
  in that one transaction or neither), escrow with a timeout in block heights, FX quotes published by the
  ``fx.quote`` policy's organisations, payments converted at a quote inside its validity window, and netting of a
  cycle's inter-bank obligations into settlement instructions.

Pure code: state comes through :class:`BlockEnv`; no time, randomness, floats or hash-ordered iteration. Every
balance lives under one key, so the ledger invariant is simple: for each asset, supply = sum of all balances
(escrowed funds sit on :data:`ESCROW_ACCOUNT`, which no key controls).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

from qilian.crypto.suite import Suite
from qilian.execution.chain import ChainRules, MemberInfo, TxRejected
from qilian.execution.env import BlockEnv, CallFailed, Outcome, TxCall
from qilian.execution.messages import quote
from qilian.execution.modules.base import Module
from qilian.types.codec import decode_raw, encode, encode_trusted
from qilian.types.core import Event, Transaction

ASSET_MODULE: Final = "asset"
"""Target of ledger transactions."""
SETTLE_MODULE: Final = "settle"
"""Target of settlement transactions."""
ASSET_NAMESPACE: Final = "app:asset"
"""``a`` ‖ symbol → asset; ``b`` ‖ symbol ‖ 0x00 ‖ account → balance; ``l`` ‖ symbol ‖ 0x00 ‖ owner ‖ spender →
allowance (accounts as 20 raw bytes)."""
SETTLE_NAMESPACE: Final = "app:settle"
"""``o`` ‖ digest → height an offer was used; ``next-e``/``e`` ‖ id → escrows; ``next-q``/``q`` ‖ id → quotes;
``cycle`` → open netting cycle; ``ob`` ‖ cycle → obligations; ``net`` ‖ cycle → settlement instructions."""

DOMAIN_OFFER: Final = b"QILIAN/SETTLE-OFFER/1\x00"
"""Prefix of what the maker of a swap offer signs, so an offer can never pass for a transaction or a vote."""
MAX_AMOUNT: Final = 2**63 - 1
"""Largest amount, balance or supply (minor units)."""
MAX_DECIMALS: Final = 18
"""Most decimal places an asset may declare."""
MAX_SYMBOL: Final = 12
"""Longest asset symbol."""
MAX_NAME: Final = 64
"""Longest asset name."""
MAX_MEMO: Final = 256
"""Longest memo or escrow condition (UTF-8 bytes)."""
MAX_ESCROW_BLOCKS: Final = 1_000_000
"""Longest escrow timeout (blocks)."""
MAX_QUOTE_BLOCKS: Final = 10_000
"""Longest validity window of an FX quote (blocks)."""
MAX_RATE_PART: Final = 10**18
"""Largest numerator or denominator of an FX rate."""
MAX_OBLIGATIONS: Final = 1024
"""Distinct (debtor, creditor, asset) obligations one netting cycle may hold."""
ESCROW_ACCOUNT: Final = "00" * 19 + "e5"
"""The account escrowed funds sit on: not the address of any key, so only this module moves them."""


def is_account(value: Any) -> bool:
    """Whether ``value`` is an account: an address as 40 lowercase hex digits."""
    return type(value) is str and len(value) == 40 and all(c in "0123456789abcdef" for c in value)


def is_symbol(value: Any) -> bool:
    """Whether ``value`` is an asset symbol: an upper-case ASCII letter, then letters or digits, at most 12."""
    return (type(value) is str and 1 <= len(value) <= MAX_SYMBOL and value.isascii() and value[0].isalpha()
            and value.isalnum() and value == value.upper())


def compute_org_account(suite: Suite, org: str) -> str:
    """An organisation's treasury account for FX payments: a hash, so no key controls it but this module."""
    return suite.hash(b"QILIAN/ORG-TREASURY/1\x00" + org.encode())[:20].hex()


@dataclass(frozen=True, slots=True)
class Asset:
    """An asset as stored in state."""

    symbol: str
    """Its symbol, e.g. CNY."""
    name: str
    """Readable name."""
    decimals: int
    """Decimal places of the minor unit (display only: amounts are always integers of minor units)."""
    issuer_org: str
    """The organisation that created it and alone mints and burns (policy asset.issue, SELF)."""
    supply: int
    """Minor units in existence: always the sum of all balances."""
    max_supply: int
    """Cap on supply (MAX_AMOUNT when uncapped)."""
    created: int
    """Height it was created at."""

    def to_value(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "name": self.name, "decimals": self.decimals, "issuer_org": self.issuer_org,
                "supply": self.supply, "max_supply": self.max_supply, "created": self.created}

    @classmethod
    def from_value(cls, d: dict[str, Any]) -> Asset:
        return cls(d["symbol"], d["name"], d["decimals"], d["issuer_org"], d["supply"], d["max_supply"],
                   d["created"])


def compute_asset_key(symbol: str) -> bytes:
    """State key of an asset."""
    return b"a" + symbol.encode()


def compute_balance_key(symbol: str, account: str) -> bytes:
    """State key of an account's balance of an asset."""
    return b"b" + symbol.encode() + b"\x00" + bytes.fromhex(account)


def compute_holders_prefix(symbol: str) -> bytes:
    """Prefix of every balance key of an asset: its holders are the keys under it (a balance that falls to zero
    is deleted, so a listing shows only accounts that hold some)."""
    return b"b" + symbol.encode() + b"\x00"


def compute_allowance_key(symbol: str, owner: str, spender: str) -> bytes:
    """State key of what ``spender`` may still move from ``owner``."""
    return b"l" + symbol.encode() + b"\x00" + bytes.fromhex(owner) + bytes.fromhex(spender)


def _get_int(state: Any, ns: str, key: bytes) -> int:
    raw = state(ns, key)
    return 0 if raw is None else int(decode_raw(raw))


def get_asset(state: Any, symbol: str) -> Asset | None:
    """A stored asset (``state`` is a ``get(namespace, key)`` callable)."""
    raw = state(ASSET_NAMESPACE, compute_asset_key(symbol))
    return None if raw is None else Asset.from_value(decode_raw(raw))


def get_balance(state: Any, symbol: str, account: str) -> int:
    """An account's balance of an asset (0 when it never held any)."""
    return _get_int(state, ASSET_NAMESPACE, compute_balance_key(symbol, account))


def get_allowance(state: Any, symbol: str, owner: str, spender: str) -> int:
    """What ``spender`` may still move from ``owner``."""
    return _get_int(state, ASSET_NAMESPACE, compute_allowance_key(symbol, owner, spender))


# -- checks of arguments --------------------------------------------------------------------------------------


def _symbol(value: Any) -> str:
    if not is_symbol(value):
        raise CallFailed(f"asset symbol {quote(value)} must be 1..{MAX_SYMBOL} upper-case letters or digits, "
                         f"starting with a letter")
    return str(value)


def _account(value: Any, what: str) -> str:
    if not is_account(value):
        raise CallFailed(f"{what} {quote(value)} is not an account (an address of 40 lower-case hex digits)")
    return str(value)


def _amount(value: Any, what: str = "amount") -> int:
    if type(value) is not int or not 1 <= value <= MAX_AMOUNT:
        raise CallFailed(f"{what} must be a whole number of minor units from 1 to {MAX_AMOUNT} (no decimals: "
                         f"1.50 of a 2-decimal asset is 150)")
    return int(value)


def _text(value: Any, what: str, limit: int) -> str:
    if type(value) is not str or len(value.encode()) > limit:
        raise CallFailed(f"{what} must be text of at most {limit} UTF-8 bytes")
    return str(value)


def _id(value: Any, what: str) -> int:
    if type(value) is not int or value < 1:
        raise CallFailed(f"{what} id must be a positive integer")
    return int(value)


def _args(call: TxCall, counts: tuple[int, ...], usage: str) -> tuple[Any, ...]:
    if len(call.args) not in counts:
        raise CallFailed(f"{usage}, got {len(call.args)} argument(s)")
    return call.args


# -- the ledger ---------------------------------------------------------------------------------------------


def get_existing_asset(env: BlockEnv, symbol: str) -> Asset:
    """The asset or CallFailed naming it."""
    asset = get_asset(env.state.get, symbol)
    if asset is None:
        raise CallFailed(f"no asset {quote(symbol)}")
    return asset


def process_credit(env: BlockEnv, symbol: str, account: str, amount: int) -> int:
    """Add to a balance; the new balance."""
    key = compute_balance_key(symbol, account)
    new = _get_int(env.state.get, ASSET_NAMESPACE, key) + amount
    if new > MAX_AMOUNT:  # pragma: no cover - supply is capped at MAX_AMOUNT, and balances sum to supply
        raise CallFailed(f"balance of {account} in {symbol} would exceed {MAX_AMOUNT}")
    env.state.put(ASSET_NAMESPACE, key, encode_trusted(new))
    return new


def process_debit(env: BlockEnv, symbol: str, account: str, amount: int, who: str = "") -> int:
    """Take from a balance, refusing to go below zero; the new balance."""
    key = compute_balance_key(symbol, account)
    have = _get_int(env.state.get, ASSET_NAMESPACE, key)
    if have < amount:
        raise CallFailed(f"insufficient balance: {who or account} holds {have} {symbol}, needs {amount}")
    env.state.put(ASSET_NAMESPACE, key, encode_trusted(have - amount) if have > amount else None)
    return have - amount


def process_move(env: BlockEnv, symbol: str, src: str, dst: str, amount: int, who: str = "") -> None:
    """Move ``amount`` of an existing asset between two accounts (all or nothing)."""
    process_debit(env, symbol, src, amount, who)
    process_credit(env, symbol, dst, amount)


def _put_asset(env: BlockEnv, asset: Asset) -> None:
    env.state.put(ASSET_NAMESPACE, compute_asset_key(asset.symbol), encode_trusted(asset.to_value()))


class _ArityModule(Module):
    """A module whose every method has a fixed set of argument counts, checked at admission."""

    def check_tx(self, rules: ChainRules, member: MemberInfo, tx: Transaction) -> None:
        super().check_tx(rules, member, tx)
        counts = self.arity.get(tx.body.method)
        if counts is not None and len(tx.body.args) not in counts:
            raise TxRejected("bad_args", f"{self.name}.{tx.body.method} takes {' or '.join(map(str, counts))} "
                                         f"argument(s), got {len(tx.body.args)}")


class AssetModule(_ArityModule):
    """The multi-asset ledger."""

    name = ASSET_MODULE
    version = 1
    methods: ClassVar = {"create": "asset.create", "mint": "asset.issue", "burn": "asset.issue",
                         "transfer": "asset.transfer", "approve": "asset.transfer",
                         "transfer_from": "asset.transfer"}
    arity: ClassVar = {"create": (3, 4), "mint": (3,), "burn": (2,), "transfer": (3, 4), "approve": (3,),
                       "transfer_from": (4, 5)}

    def execute(self, env: BlockEnv, call: TxCall) -> Outcome:
        handler = getattr(self, "process_" + call.method, None)
        if call.method not in self.methods or handler is None:
            raise CallFailed(f"asset has no method {quote(call.method)}")
        out: Outcome = handler(env, call)
        return out

    def process_create(self, env: BlockEnv, call: TxCall) -> Outcome:
        args = _args(call, (3, 4), "asset.create takes (symbol, name, decimals[, max_supply])")
        symbol, name = _symbol(args[0]), _text(args[1], "name", MAX_NAME)
        decimals = args[2]
        if type(decimals) is not int or not 0 <= decimals <= MAX_DECIMALS:
            raise CallFailed(f"decimals must be 0..{MAX_DECIMALS}")
        cap = _amount(args[3], "max_supply") if len(args) == 4 else MAX_AMOUNT
        env.process_require("asset.create", (call.member.to_approver(),))
        if get_asset(env.state.get, symbol) is not None:
            raise CallFailed(f"asset {symbol} exists already")
        asset = Asset(symbol, name, decimals, call.member.organisation, 0, cap, env.height)
        _put_asset(env, asset)
        return Outcome(asset.to_value(), (Event(ASSET_MODULE, "Created", {
            "symbol": symbol, "issuer_org": asset.issuer_org, "decimals": decimals, "max_supply": cap}),))

    def process_mint(self, env: BlockEnv, call: TxCall) -> Outcome:
        args = _args(call, (3,), "asset.mint takes (symbol, to, amount)")
        symbol, to, amount = _symbol(args[0]), _account(args[1], "to"), _amount(args[2])
        asset = get_existing_asset(env, symbol)
        env.process_require("asset.issue", (call.member.to_approver(),), asset.issuer_org)
        if asset.supply + amount > asset.max_supply:
            raise CallFailed(f"minting {amount} {symbol} would bring the supply to {asset.supply + amount}, over its "
                             f"cap of {asset.max_supply}")
        _put_asset(env, Asset(**{**asset.to_value(), "supply": asset.supply + amount}))
        balance = process_credit(env, symbol, to, amount)
        return Outcome({"supply": asset.supply + amount, "balance": balance}, (Event(ASSET_MODULE, "Minted", {
            "symbol": symbol, "to": to, "amount": amount}),))

    def process_burn(self, env: BlockEnv, call: TxCall) -> Outcome:
        args = _args(call, (2,), "asset.burn takes (symbol, amount)")
        symbol, amount = _symbol(args[0]), _amount(args[1])
        asset = get_existing_asset(env, symbol)
        env.process_require("asset.issue", (call.member.to_approver(),), asset.issuer_org)
        balance = process_debit(env, symbol, call.sender, amount, "the burner")
        _put_asset(env, Asset(**{**asset.to_value(), "supply": asset.supply - amount}))
        return Outcome({"supply": asset.supply - amount, "balance": balance}, (Event(ASSET_MODULE, "Burned", {
            "symbol": symbol, "from": call.sender, "amount": amount}),))

    def process_transfer(self, env: BlockEnv, call: TxCall) -> Outcome:
        args = _args(call, (3, 4), "asset.transfer takes (symbol, to, amount[, memo])")
        symbol, to, amount = _symbol(args[0]), _account(args[1], "to"), _amount(args[2])
        memo = _text(args[3], "memo", MAX_MEMO) if len(args) == 4 else ""
        env.process_require("asset.transfer", (call.member.to_approver(),))
        get_existing_asset(env, symbol)
        process_move(env, symbol, call.sender, to, amount, "the sender")
        return Outcome({"balance": get_balance(env.state.get, symbol, call.sender)}, (Event(
            ASSET_MODULE, "Transfer", {"symbol": symbol, "from": call.sender, "to": to, "amount": amount,
                                       "memo": memo}),))

    def process_approve(self, env: BlockEnv, call: TxCall) -> Outcome:
        args = _args(call, (3,), "asset.approve takes (symbol, spender, amount)")
        symbol, spender = _symbol(args[0]), _account(args[1], "spender")
        amount = args[2]
        if type(amount) is not int or not 0 <= amount <= MAX_AMOUNT:
            raise CallFailed(f"an allowance is 0..{MAX_AMOUNT} minor units (0 withdraws it)")
        env.process_require("asset.transfer", (call.member.to_approver(),))
        get_existing_asset(env, symbol)
        env.state.put(ASSET_NAMESPACE, compute_allowance_key(symbol, call.sender, spender),
                      encode_trusted(amount) if amount else None)
        return Outcome(amount, (Event(ASSET_MODULE, "Approval", {"symbol": symbol, "owner": call.sender,
                                                                 "spender": spender, "amount": amount}),))

    def process_transfer_from(self, env: BlockEnv, call: TxCall) -> Outcome:
        args = _args(call, (4, 5), "asset.transfer_from takes (symbol, owner, to, amount[, memo])")
        symbol, owner = _symbol(args[0]), _account(args[1], "owner")
        to, amount = _account(args[2], "to"), _amount(args[3])
        memo = _text(args[4], "memo", MAX_MEMO) if len(args) == 5 else ""
        env.process_require("asset.transfer", (call.member.to_approver(),))
        get_existing_asset(env, symbol)
        key = compute_allowance_key(symbol, owner, call.sender)
        allowed = _get_int(env.state.get, ASSET_NAMESPACE, key)
        if allowed < amount:
            raise CallFailed(f"allowance exceeded: {owner} allows {call.sender} {allowed} {symbol}, needs {amount}")
        env.state.put(ASSET_NAMESPACE, key, encode_trusted(allowed - amount) if allowed > amount else None)
        process_move(env, symbol, owner, to, amount, "the owner")
        return Outcome(allowed - amount, (Event(ASSET_MODULE, "Transfer", {
            "symbol": symbol, "from": owner, "to": to, "amount": amount, "memo": memo, "spender": call.sender}),))


# -- settlement ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Offer:
    """One side of a delivery-versus-payment swap, signed off-chain by its maker (party B)."""

    give_symbol: str
    """What the maker delivers."""
    give_amount: int
    """How much of it (minor units)."""
    want_symbol: str
    """What the maker wants in return."""
    want_amount: int
    """How much of it."""
    taker: str
    """The only account that may take it (empty: anyone)."""
    deadline: int
    """Last height it may be taken at."""
    nonce: int
    """Distinguishes equal offers (each offer is taken at most once)."""

    def to_value(self) -> list[Any]:
        """The canonical list the maker signs."""
        return [self.give_symbol, self.give_amount, self.want_symbol, self.want_amount, self.taker, self.deadline,
                self.nonce]


def compute_offer(value: Any) -> Offer:
    """Check an offer's shape; CallFailed names the missing or malformed part (a swap with a missing leg)."""
    if type(value) not in (list, tuple) or len(value) != 7:
        raise CallFailed("an offer is [give_symbol, give_amount, want_symbol, want_amount, taker, deadline, nonce]")
    gs, ga, ws, wa, taker, deadline, nonce = value
    if gs is None or ga in (None, 0):
        raise CallFailed("the offer has no delivery leg: give_symbol and a positive give_amount are required")
    if ws is None or wa in (None, 0):
        raise CallFailed("the offer has no payment leg: want_symbol and a positive want_amount are required")
    give_symbol, want_symbol = _symbol(gs), _symbol(ws)
    if give_symbol == want_symbol:
        raise CallFailed(f"both legs are in {give_symbol}: a swap exchanges two different assets")
    if taker != "":
        _account(taker, "taker")
    if type(deadline) is not int or deadline < 0 or type(nonce) is not int or nonce < 0:
        raise CallFailed("deadline (a height) and nonce are non-negative integers")
    return Offer(give_symbol, _amount(ga, "give_amount"), want_symbol, _amount(wa, "want_amount"), str(taker),
                 int(deadline), int(nonce))


def compute_offer_sign_bytes(suite: Suite, chain_id: str, offer: list[Any]) -> bytes:
    """What the maker signs: the domain tag, then hash([chain_id, offer bytes]) (the chain ID stops replay on
    another chain; the chain records each taken offer's digest so it is taken once)."""
    return DOMAIN_OFFER + suite.hash(encode_trusted([chain_id, encode(list(offer))]))


def compute_signed_offer(suite: Suite, private_key: bytes, public_key: bytes, chain_id: str,
                         offer: list[Any]) -> list[Any]:
    """``[offer, maker_public_key, signature]``: what party B hands to party A."""
    return [list(offer), public_key, suite.sign(private_key, compute_offer_sign_bytes(suite, chain_id, offer))]


@dataclass(frozen=True, slots=True)
class Escrow:
    """Funds held on ESCROW_ACCOUNT until released to the payee or refunded to the payer."""

    id: int
    """Sequential id, from 1."""
    payer: str
    """Who deposited (and gets a refund)."""
    payee: str
    """Who gets the funds on release."""
    arbiter: str
    """An account that may release or refund at any time before the timeout (empty: none)."""
    symbol: str
    """The asset."""
    amount: int
    """Minor units held."""
    condition: str
    """What release means (e.g. a delivery note's digest), shown to all parties."""
    created: int
    """Height of the deposit."""
    expires: int
    """Last height a release is accepted at; after it, anyone may trigger the refund."""
    status: str
    """held, released or refunded."""
    closed: int = 0
    """Height it was released or refunded (0 while held)."""

    def to_value(self) -> dict[str, Any]:
        return {"id": self.id, "payer": self.payer, "payee": self.payee, "arbiter": self.arbiter,
                "symbol": self.symbol, "amount": self.amount, "condition": self.condition, "created": self.created,
                "expires": self.expires, "status": self.status, "closed": self.closed}

    @classmethod
    def from_value(cls, d: dict[str, Any]) -> Escrow:
        return cls(d["id"], d["payer"], d["payee"], d["arbiter"], d["symbol"], d["amount"], d["condition"],
                   d["created"], d["expires"], d["status"], d["closed"])


@dataclass(frozen=True, slots=True)
class Quote:
    """An FX rate published on chain: 1 minor unit of ``base`` buys ``num/den`` minor units of ``counter``."""

    id: int
    """Sequential id, from 1."""
    base: str
    """The asset paid in."""
    counter: str
    """The asset paid out."""
    num: int
    """Rate numerator."""
    den: int
    """Rate denominator (a rational rate: no floats)."""
    valid_from: int
    """First height it applies at (its publishing block)."""
    valid_until: int
    """Last height it applies at."""
    provider_org: str
    """Organisation of the publishing key (counted by policy fx.quote)."""
    provider: str
    """Address of the publishing key."""

    def to_value(self) -> dict[str, Any]:
        return {"id": self.id, "base": self.base, "counter": self.counter, "num": self.num, "den": self.den,
                "valid_from": self.valid_from, "valid_until": self.valid_until, "provider_org": self.provider_org,
                "provider": self.provider}

    @classmethod
    def from_value(cls, d: dict[str, Any]) -> Quote:
        return cls(d["id"], d["base"], d["counter"], d["num"], d["den"], d["valid_from"], d["valid_until"],
                   d["provider_org"], d["provider"])


def compute_converted(quote_: Quote, amount: int) -> int:
    """Minor units of the counter asset ``amount`` of the base buys: rounded down (the payer never gets more than
    the rate gives; the remainder stays with the paying bank)."""
    return amount * quote_.num // quote_.den


def compute_escrow_key(escrow_id: int) -> bytes:
    """State key of an escrow."""
    return b"e" + escrow_id.to_bytes(8, "big")


def compute_quote_key(quote_id: int) -> bytes:
    """State key of a quote."""
    return b"q" + quote_id.to_bytes(8, "big")


def compute_obligations_key(cycle: int) -> bytes:
    """State key of a netting cycle's open obligations."""
    return b"ob" + cycle.to_bytes(8, "big")


def compute_netting_key(cycle: int) -> bytes:
    """State key of a closed cycle's settlement instructions."""
    return b"net" + cycle.to_bytes(8, "big")


def get_escrow(state: Any, escrow_id: int) -> Escrow | None:
    """A stored escrow."""
    raw = state(SETTLE_NAMESPACE, compute_escrow_key(escrow_id))
    return None if raw is None else Escrow.from_value(decode_raw(raw))


def get_quote(state: Any, quote_id: int) -> Quote | None:
    """A stored FX quote."""
    raw = state(SETTLE_NAMESPACE, compute_quote_key(quote_id))
    return None if raw is None else Quote.from_value(decode_raw(raw))


def get_cycle(state: Any) -> int:
    """The open netting cycle (from 1)."""
    return _get_int(state, SETTLE_NAMESPACE, b"cycle") or 1


def get_obligations(state: Any, cycle: int) -> dict[str, int]:
    """``debtor_org/creditor_org/symbol`` → minor units owed, for a cycle."""
    raw = state(SETTLE_NAMESPACE, compute_obligations_key(cycle))
    return {} if raw is None else dict(decode_raw(raw))


def get_netting(state: Any, cycle: int) -> dict[str, Any] | None:
    """A closed cycle's settlement instructions."""
    raw = state(SETTLE_NAMESPACE, compute_netting_key(cycle))
    return None if raw is None else dict(decode_raw(raw))


def compute_instructions(obligations: dict[str, int]) -> list[dict[str, Any]]:
    """Bilateral net per asset: for each pair of banks and asset, one instruction for the difference of what each
    owes the other (none when it is zero). Sorted, so every node writes the same bytes."""
    net: dict[tuple[str, str, str], int] = {}
    for key in sorted(obligations):
        debtor, creditor, symbol = key.split("/")
        a, b = sorted((debtor, creditor))
        sign = 1 if debtor == a else -1
        net[(a, b, symbol)] = net.get((a, b, symbol), 0) + sign * obligations[key]
    out = []
    for (a, b, symbol), amount in sorted(net.items()):
        if amount > 0:
            out.append({"from": a, "to": b, "symbol": symbol, "amount": amount})
        elif amount < 0:
            out.append({"from": b, "to": a, "symbol": symbol, "amount": -amount})
    return out


def _next_id(env: BlockEnv, key: bytes) -> int:
    n = _get_int(env.state.get, SETTLE_NAMESPACE, key) or 1
    env.state.put(SETTLE_NAMESPACE, key, encode_trusted(n + 1))
    return n


class SettleModule(_ArityModule):
    """Delivery versus payment, escrow, FX quotes and payments, netting."""

    name = SETTLE_MODULE
    version = 1
    methods: ClassVar = {"swap": "asset.transfer", "escrow": "asset.transfer", "release": "asset.transfer",
                         "refund": "asset.transfer", "quote": "fx.quote", "fx_pay": "asset.transfer",
                         "net": "settle.net"}
    arity: ClassVar = {"swap": (3,), "escrow": (5, 6), "release": (1,), "refund": (1,), "quote": (5,),
                       "fx_pay": (3, 4, 5), "net": (0,)}

    def execute(self, env: BlockEnv, call: TxCall) -> Outcome:
        handler = getattr(self, "process_" + call.method, None)
        if call.method not in self.methods or handler is None:
            raise CallFailed(f"settle has no method {quote(call.method)}")
        out: Outcome = handler(env, call)
        return out

    def process_swap(self, env: BlockEnv, call: TxCall) -> Outcome:
        """Take a signed offer: both legs move in this transaction, or (any failure) neither does."""
        offer_value, maker_key, signature = _args(call, (3,), "settle.swap takes (offer, maker_public_key, "
                                                              "maker_signature)")
        offer = compute_offer(offer_value)
        if type(maker_key) is not bytes or type(signature) is not bytes:
            raise CallFailed("the maker's public key and signature are bytes")
        env.process_require("asset.transfer", (call.member.to_approver(),))
        maker_member = env.rules.members.get(maker_key)
        if maker_member is None:
            raise CallFailed("the offer's maker key is not a member of any organisation of this chain")
        env.process_require("asset.transfer", (maker_member.to_approver(),))
        suite = env.rules.suite
        sign_bytes = compute_offer_sign_bytes(suite, env.rules.chain_id, offer.to_value())
        if not suite.verify(maker_key, sign_bytes, signature):
            raise CallFailed(f"the offer's signature does not verify for this offer and chain "
                             f"{quote(env.rules.chain_id)}")
        maker = suite.compute_address(maker_key).hex()
        if maker == call.sender:
            raise CallFailed("the maker cannot take their own offer")
        if offer.taker and offer.taker != call.sender:
            raise CallFailed(f"the offer may be taken only by {offer.taker}")
        if env.height > offer.deadline:
            raise CallFailed(f"the offer was good until height {offer.deadline}; the chain is at {env.height}")
        digest = suite.hash(sign_bytes)
        used = env.state.get(SETTLE_NAMESPACE, b"o" + digest)
        if used is not None:
            raise CallFailed(f"this offer was already taken at height {decode_raw(used)}")
        get_existing_asset(env, offer.give_symbol)
        get_existing_asset(env, offer.want_symbol)
        process_move(env, offer.give_symbol, maker, call.sender, offer.give_amount, "the maker")
        process_move(env, offer.want_symbol, call.sender, maker, offer.want_amount, "the taker")
        env.state.put(SETTLE_NAMESPACE, b"o" + digest, encode_trusted(env.height))
        return Outcome({"maker": maker, "taker": call.sender, "offer": digest}, (Event(SETTLE_MODULE, "Swapped", {
            "maker": maker, "taker": call.sender, "give_symbol": offer.give_symbol, "give_amount": offer.give_amount,
            "want_symbol": offer.want_symbol, "want_amount": offer.want_amount}),))

    def process_escrow(self, env: BlockEnv, call: TxCall) -> Outcome:
        args = _args(call, (5, 6), "settle.escrow takes (symbol, amount, payee, timeout_blocks, condition"
                                   "[, arbiter])")
        symbol, amount, payee = _symbol(args[0]), _amount(args[1]), _account(args[2], "payee")
        timeout = args[3]
        if type(timeout) is not int or not 1 <= timeout <= MAX_ESCROW_BLOCKS:
            raise CallFailed(f"timeout_blocks must be 1..{MAX_ESCROW_BLOCKS}")
        condition = _text(args[4], "condition", MAX_MEMO)
        arbiter = _account(args[5], "arbiter") if len(args) == 6 and args[5] != "" else ""
        if payee == call.sender:
            raise CallFailed("the payee must be another account than the payer")
        env.process_require("asset.transfer", (call.member.to_approver(),))
        get_existing_asset(env, symbol)
        process_move(env, symbol, call.sender, ESCROW_ACCOUNT, amount, "the payer")
        eid = _next_id(env, b"next-e")
        e = Escrow(eid, call.sender, payee, arbiter, symbol, amount, condition, env.height, env.height + timeout,
                   "held")
        env.state.put(SETTLE_NAMESPACE, compute_escrow_key(eid), encode_trusted(e.to_value()))
        return Outcome(e.to_value(), (Event(SETTLE_MODULE, "Escrowed", {
            "id": eid, "payer": e.payer, "payee": payee, "symbol": symbol, "amount": amount,
            "expires": e.expires}),))

    def _held(self, env: BlockEnv, value: Any) -> Escrow:
        eid = _id(value, "an escrow")
        e = get_escrow(env.state.get, eid)
        if e is None:
            raise CallFailed(f"no escrow {eid}")
        if e.status != "held":
            raise CallFailed(f"escrow {eid} is {e.status} already (at height {e.closed})")
        return e

    def _close(self, env: BlockEnv, e: Escrow, to: str, status: str) -> Outcome:
        process_move(env, e.symbol, ESCROW_ACCOUNT, to, e.amount)
        done = Escrow(**{**e.to_value(), "status": status, "closed": env.height})
        env.state.put(SETTLE_NAMESPACE, compute_escrow_key(e.id), encode_trusted(done.to_value()))
        return Outcome(done.to_value(), (Event(SETTLE_MODULE, status.capitalize(), {
            "id": e.id, "to": to, "symbol": e.symbol, "amount": e.amount}),))

    def process_release(self, env: BlockEnv, call: TxCall) -> Outcome:
        """The payer (acknowledging receipt of what was paid for) or the arbiter pays the payee."""
        (eid,) = _args(call, (1,), "settle.release takes (escrow_id)")
        e = self._held(env, eid)
        if call.sender not in (e.payer, e.arbiter):
            raise CallFailed(f"only the payer {e.payer}" + (f" or the arbiter {e.arbiter}" if e.arbiter else "")
                             + f" may release escrow {e.id}")
        if env.height > e.expires:
            raise CallFailed(f"escrow {e.id} timed out at height {e.expires}: it can only be refunded")
        return self._close(env, e, e.payee, "released")

    def process_refund(self, env: BlockEnv, call: TxCall) -> Outcome:
        """After the timeout anyone returns the funds to the payer; before it, the payee or the arbiter may."""
        (eid,) = _args(call, (1,), "settle.refund takes (escrow_id)")
        e = self._held(env, eid)
        if env.height <= e.expires and call.sender not in (e.payee, e.arbiter):
            raise CallFailed(f"escrow {e.id} is held until height {e.expires}; before then only the payee"
                             + (" or the arbiter" if e.arbiter else "") + " may refund it")
        return self._close(env, e, e.payer, "refunded")

    def process_quote(self, env: BlockEnv, call: TxCall) -> Outcome:
        args = _args(call, (5,), "settle.quote takes (base, counter, num, den, valid_blocks)")
        base, counter = _symbol(args[0]), _symbol(args[1])
        num, den, valid = args[2], args[3], args[4]
        if base == counter:
            raise CallFailed("a quote converts between two different assets")
        for v, what in ((num, "num"), (den, "den")):
            if type(v) is not int or not 1 <= v <= MAX_RATE_PART:
                raise CallFailed(f"rate {what} must be 1..{MAX_RATE_PART} (the rate is num/den, integers)")
        if type(valid) is not int or not 1 <= valid <= MAX_QUOTE_BLOCKS:
            raise CallFailed(f"valid_blocks must be 1..{MAX_QUOTE_BLOCKS}")
        env.process_require("fx.quote", (call.member.to_approver(),))
        get_existing_asset(env, base)
        get_existing_asset(env, counter)
        qid = _next_id(env, b"next-q")
        q = Quote(qid, base, counter, num, den, env.height, env.height + valid - 1, call.member.organisation,
                  call.sender)
        env.state.put(SETTLE_NAMESPACE, compute_quote_key(qid), encode_trusted(q.to_value()))
        return Outcome(q.to_value(), (Event(SETTLE_MODULE, "Quoted", q.to_value()),))

    def process_fx_pay(self, env: BlockEnv, call: TxCall) -> Outcome:
        """Pay ``amount`` of the quote's base asset; the payee receives the converted counter asset.

        The base goes to the base issuer bank's treasury, the counter comes from the counter issuer bank's
        treasury, and the base bank now owes the counter bank the converted amount: an obligation of the open
        netting cycle."""
        args = _args(call, (3, 4, 5), "settle.fx_pay takes (quote_id, amount, to[, min_out[, memo]])")
        qid, amount, to = _id(args[0], "a quote"), _amount(args[1]), _account(args[2], "to")
        min_out = args[3] if len(args) >= 4 else 0
        if type(min_out) is not int or min_out < 0:
            raise CallFailed("min_out is a non-negative integer")
        memo = _text(args[4], "memo", MAX_MEMO) if len(args) == 5 else ""
        env.process_require("asset.transfer", (call.member.to_approver(),))
        q = get_quote(env.state.get, qid)
        if q is None:
            raise CallFailed(f"no quote {qid}")
        if not q.valid_from <= env.height <= q.valid_until:
            raise CallFailed(f"quote {qid} expired: it was valid for heights {q.valid_from}..{q.valid_until}; the "
                             f"chain is at {env.height}")
        out = compute_converted(q, amount)
        if out < 1 or out < min_out:
            raise CallFailed(f"{amount} {q.base} converts to {out} {q.counter} at quote {qid}, below the minimum of "
                             f"{max(min_out, 1)}")
        base_bank = get_existing_asset(env, q.base).issuer_org
        counter_bank = get_existing_asset(env, q.counter).issuer_org
        suite = env.rules.suite
        process_move(env, q.base, call.sender, compute_org_account(suite, base_bank), amount, "the payer")
        process_move(env, q.counter, compute_org_account(suite, counter_bank), to, out,
                     f"the treasury of {counter_bank}")
        cycle = get_cycle(env.state.get)
        if base_bank != counter_bank:
            obligations = get_obligations(env.state.get, cycle)
            key = f"{base_bank}/{counter_bank}/{q.counter}"
            if key not in obligations and len(obligations) >= MAX_OBLIGATIONS:
                raise CallFailed(f"netting cycle {cycle} holds {MAX_OBLIGATIONS} obligations; net it first")
            owed = obligations.get(key, 0) + out
            if owed > MAX_AMOUNT:
                raise CallFailed(f"netting cycle {cycle} would owe more than {MAX_AMOUNT}; net it first")
            obligations[key] = owed
            env.state.put(SETTLE_NAMESPACE, compute_obligations_key(cycle), encode_trusted(obligations))
        return Outcome({"paid": amount, "received": out, "quote": qid, "cycle": cycle}, (Event(
            SETTLE_MODULE, "FxPaid", {"quote": qid, "from": call.sender, "to": to, "paid": amount,
                                      "base": q.base, "received": out, "counter": q.counter, "memo": memo,
                                      "debtor": base_bank, "creditor": counter_bank}),))

    def process_net(self, env: BlockEnv, call: TxCall) -> Outcome:
        """Close the open cycle (a business day): its obligations become bilateral settlement instructions."""
        _args(call, (0,), "settle.net takes no arguments")
        env.process_require("settle.net", (call.member.to_approver(),))
        cycle = get_cycle(env.state.get)
        obligations = get_obligations(env.state.get, cycle)
        instructions = compute_instructions(obligations)
        result = {"cycle": cycle, "closed": env.height, "closed_by": call.member.organisation,
                  "obligations": obligations, "instructions": instructions}
        env.state.put(SETTLE_NAMESPACE, compute_netting_key(cycle), encode_trusted(result))
        env.state.put(SETTLE_NAMESPACE, b"cycle", encode_trusted(cycle + 1))
        return Outcome(result, (Event(SETTLE_MODULE, "Netted", {
            "cycle": cycle, "instructions": len(instructions)}),))


__all__ = [
    "ASSET_MODULE",
    "ASSET_NAMESPACE",
    "ESCROW_ACCOUNT",
    "SETTLE_MODULE",
    "SETTLE_NAMESPACE",
    "Asset",
    "AssetModule",
    "Escrow",
    "Offer",
    "Quote",
    "SettleModule",
    "compute_balance_key",
    "compute_converted",
    "compute_holders_prefix",
    "compute_instructions",
    "compute_offer",
    "compute_offer_sign_bytes",
    "compute_org_account",
    "compute_signed_offer",
    "get_allowance",
    "get_asset",
    "get_balance",
    "get_cycle",
    "get_escrow",
    "get_netting",
    "get_obligations",
    "get_quote",
]
