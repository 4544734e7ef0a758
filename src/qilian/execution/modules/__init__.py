"""The module registry: an ordered, versioned list of the state machine's built-in modules.

A transaction's ``to`` names a module (``kv``, ``contracts``, ``gov``) or a contract (40 hex digits or a system
contract name such as ``evidence``), which the contract-call module runs. The order is the order of the
end-of-block hooks; it and each module's version are part of the state transition, so changing either is a chain
upgrade. Pure code, no IO.
"""

from __future__ import annotations

from typing import Final

from qilian.apps.copyright.module import CopyrightModule  # scenario apps: src/qilian/apps/<name>/module.py
from qilian.apps.identity.module import DidModule
from qilian.apps.iot.module import IotModule
from qilian.apps.payments.module import AssetModule, SettleModule
from qilian.apps.registry.module import RegistryModule
from qilian.apps.trace.module import TraceModule
from qilian.execution.contracts import is_contract_target
from qilian.execution.modules.base import Module
from qilian.execution.modules.contract import ContractCallModule, ContractsModule
from qilian.execution.modules.gov import GovModule
from qilian.execution.modules.kv import KvModule
from qilian.execution.modules.regulator import RegulatorModule

MODULES: Final[tuple[Module, ...]] = (KvModule(), ContractsModule(), GovModule(),
                                      TraceModule(), IotModule(), CopyrightModule(),
                                      AssetModule(), SettleModule(), DidModule(), RegistryModule(),
                                      RegulatorModule())
"""Built-in modules, in hook order."""
CONTRACT_CALLS: Final = ContractCallModule()
"""Runs calls whose target is a contract."""
_BY_NAME: Final = {m.name: m for m in MODULES}


def get_module(to: str) -> Module | None:
    """The module that runs a transaction sent ``to`` this target, or None if nothing does."""
    m = _BY_NAME.get(to)
    if m is not None:
        return m
    return CONTRACT_CALLS if is_contract_target(to) else None


def get_registry() -> list[tuple[str, int, dict[str, str]]]:
    """(name, version, method → resource) of each module, for documentation and the API."""
    return [(m.name, m.version, dict(m.methods)) for m in MODULES]


__all__ = ["CONTRACT_CALLS", "MODULES", "Module", "get_module", "get_registry"]
