"""What the scenario apps' HTTP routers share: a state entry with its proof against the latest header, in the
shape of ``GET /state/{namespace}/{key}`` so :func:`qilian.sdk.verify.verify_state_response` checks it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qilian.node.node import Node


def make_proven(node: Node, api_error: type[Exception]) -> Callable[[str, bytes], dict[str, Any]]:
    """``proven(namespace, key)``: the value committed by the latest header, with its proof — the read side's
    one-snapshot ``GET /state`` document (its refusals are the API's own errors)."""
    from qilian.api.readside import ReadSide

    return ReadSide(node.store, node.suite, node.genesis).get_state
