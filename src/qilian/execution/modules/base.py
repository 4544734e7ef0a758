"""What a module is: a name, a version, its methods with the resource each needs permission for, static admission
rules (``check_tx``), execution, and an end-of-block hook."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from qilian.execution.chain import ChainRules, MemberInfo, TxRejected
from qilian.execution.env import BlockEnv, CallFailed, Outcome, TxCall
from qilian.types.core import Transaction


class Module:
    """A built-in part of the state machine, addressed by ``tx.to == name``.

    ``methods`` maps each method to the policy resource it needs ("" when the module decides itself, as
    governance does: its approvals are the action's)."""

    name: ClassVar[str] = ""
    """Target name in transactions."""
    version: ClassVar[int] = 1
    """Bumped whenever the module's behaviour changes (a chain upgrade)."""
    methods: ClassVar[Mapping[str, str]] = {}
    """Method → policy resource."""
    arity: ClassVar[Mapping[str, tuple[int, ...]]] = {}
    """Method → accepted argument counts (checked at admission; empty means the module checks itself)."""

    def check_tx(self, rules: ChainRules, member: MemberInfo, tx: Transaction) -> None:
        """Static admission rules: the method exists. Raises TxRejected. Reads no state (the mempool has none)."""
        if tx.body.method not in self.methods:
            raise TxRejected("unknown_method", f"{self.name} has no method {tx.body.method!r} (it has "
                                               f"{', '.join(self.methods)})")

    def execute(self, env: BlockEnv, call: TxCall) -> Outcome:  # pragma: no cover - abstract
        """Run one call; raise CallFailed (or return a failed Outcome) and none of its writes survive."""
        raise NotImplementedError

    def begin_block(self, env: BlockEnv) -> None:
        """Called once before the block's first transaction; its writes go straight into the block's writes."""

    def end_block(self, env: BlockEnv) -> None:
        """Called once after the block's last transaction; its writes go straight into the block's writes."""


def expect_args(call: TxCall, counts: tuple[int, ...], usage: str) -> tuple[Any, ...]:
    """The call's arguments, or CallFailed naming the usage when their number is wrong."""
    args = call.args
    if len(args) not in counts:
        raise CallFailed(f"{usage}, got {len(args)} argument(s)")
    return args
