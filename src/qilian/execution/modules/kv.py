"""The built-in key-value module: ``put(key, value)`` and ``delete(key)`` in namespace ``kv``."""

from __future__ import annotations

from typing import Any, ClassVar, Final

from qilian.execution.env import BlockEnv, CallFailed, Outcome, TxCall
from qilian.execution.messages import quote
from qilian.execution.modules.base import Module
from qilian.types.core import Event

MAX_KV_KEY: Final = 1024
"""Longest key the built-in ``kv`` module stores."""
MAX_KV_VALUE: Final = 60 * 1024
"""Largest value the built-in ``kv`` module stores (a transaction is at most 64 KiB anyway)."""


def _as_bytes(value: Any, what: str) -> bytes:
    if type(value) is bytes:
        return value
    if type(value) is str:
        return value.encode()
    raise CallFailed(f"{what} must be bytes or text, got {type(value).__name__}")


class KvModule(Module):
    """Plain key-value storage, for applications that need no contract."""

    name = "kv"
    version = 1
    methods: ClassVar = {"put": "kv.put", "delete": "kv.delete"}

    def execute(self, env: BlockEnv, call: TxCall) -> Outcome:
        args = call.args
        if call.method == "put":
            if len(args) != 2:
                raise CallFailed(f"kv.put takes 2 arguments (key, value), got {len(args)}")
            key, value = _as_bytes(args[0], "key"), _as_bytes(args[1], "value")
            if not key or len(key) > MAX_KV_KEY:
                raise CallFailed(f"key must be 1..{MAX_KV_KEY} bytes, got {len(key)}")
            if len(value) > MAX_KV_VALUE:
                raise CallFailed(f"value of {len(value)} bytes is over the limit of {MAX_KV_VALUE}")
            env.process_require("kv.put", (call.member.to_approver(),))
            env.state.put("kv", key, value)
            return Outcome(None, (Event("kv", "put", {"key": key, "size": len(value)}),))
        if call.method == "delete":
            if len(args) != 1:
                raise CallFailed(f"kv.delete takes 1 argument (key), got {len(args)}")
            key = _as_bytes(args[0], "key")
            env.process_require("kv.delete", (call.member.to_approver(),))
            existed = env.state.get("kv", key) is not None
            env.state.put("kv", key, None)
            return Outcome(existed, (Event("kv", "delete", {"key": key}),))
        raise CallFailed(f"kv has no method {quote(call.method)}")
