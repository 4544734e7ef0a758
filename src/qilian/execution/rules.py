"""Who may send what, when: the transaction validity rules every node applies identically.

A transaction that breaks one of these rules never reaches a block (the mempool refuses it with the rule's
error) and a block carrying one is invalid. A transaction that passes them but whose call fails still goes into
its block with a failed receipt — that failure is a fact every node agrees on.
"""

from __future__ import annotations

from collections.abc import Callable

from qilian.crypto.suite import Suite
from qilian.execution.chain import ChainRules, MemberInfo, TxRejected
from qilian.execution.modules import get_module
from qilian.types.core import SENDING_ROLES, Transaction, compute_tx_sign_bytes

MemberLookup = Callable[[bytes], MemberInfo | None]
"""Membership of a key in the state a transaction is checked against (the tip's, for admission; the parent's,
for a block): membership is chain state, changed by governance."""


def check_tx_static(rules: ChainRules, tx: Transaction, encoded_size: int,
                    get_member: MemberLookup | None = None) -> MemberInfo:
    """Rules that depend on the transaction and the membership of its sender: chain, size, sender membership (in
    the state ``get_member`` reads; genesis membership when None — a state-less test), target. Returns the sender.

    The signature is checked separately (once, on admission, then cached): see :func:`is_valid_tx_signature`.
    """
    body = tx.body
    params = rules.genesis.params
    if body.chain_id != rules.chain_id:
        raise TxRejected("wrong_chain", f"transaction is for chain {body.chain_id!r}, this is {rules.chain_id!r}")
    if encoded_size > params.max_tx_bytes:
        raise TxRejected("too_large", f"transaction is {encoded_size} bytes, over the limit of {params.max_tx_bytes}")
    if len(body.sender) != rules.suite.public_key_size:
        raise TxRejected(
            "bad_sender",
            f"sender key is {len(body.sender)} bytes; suite {rules.suite.name} keys are "
            f"{rules.suite.public_key_size}",
        )
    member = rules.members.get(body.sender) if get_member is None else get_member(body.sender)
    if member is None:
        raise TxRejected("not_member", "sender key is not a member of any organisation of this chain (or it "
                                       "was revoked)")
    if not member.roles & SENDING_ROLES:
        raise TxRejected("forbidden", f"sender {member.organisation}/{member.name} has no role that may transact")
    module = get_module(body.to)
    if module is None:
        raise TxRejected("unknown_target", f"no module or contract named {body.to!r}")
    module.check_tx(rules, member, tx)
    return member


def is_valid_tx_signature(suite: Suite, tx: Transaction, tx_hash: bytes) -> bool:
    """True iff the sender signed this body. Callers cache the answer by tx hash."""
    return suite.verify(tx.body.sender, compute_tx_sign_bytes(tx_hash), tx.signature)


def check_tx_window(rules: ChainRules, tx: Transaction, height: int) -> None:
    """Replay window: a transaction may enter a block only at heights up to ``expires_at``, and ``expires_at`` may
    not lie more than ``tx_validity_blocks`` ahead — so a node needs to remember committed hashes only that long
    to refuse a replay, and a signed transaction cannot be held back and used much later."""
    expires_at = tx.body.expires_at
    if expires_at < height:
        raise TxRejected("expired", f"transaction expired at height {expires_at}; the chain is at {height}")
    limit = height + rules.genesis.params.tx_validity_blocks
    if expires_at > limit:
        raise TxRejected(
            "expiry_too_far",
            f"expires_at {expires_at} is more than {rules.genesis.params.tx_validity_blocks} blocks ahead "
            f"of height {height}",
        )


__all__ = ["ChainRules", "MemberInfo", "MemberLookup", "TxRejected", "check_tx_static", "check_tx_window",
           "is_valid_tx_signature"]
