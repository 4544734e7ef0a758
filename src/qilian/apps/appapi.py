"""What the scenario apps' HTTP routers share: a state entry with its proof against the latest header, in the
shape of ``GET /state/{namespace}/{key}`` so :func:`qilian.sdk.verify.verify_state_response` checks it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qilian.api.views import commit_view, header_view
from qilian.types.codec import to_json_value

if TYPE_CHECKING:
    from qilian.node.node import Node


def make_proven(node: Node, api_error: type[Exception]) -> Callable[[str, bytes], dict[str, Any]]:
    """``proven(namespace, key)``: the value committed by the latest header, with its proof."""

    def proven(namespace: str, key: bytes) -> dict[str, Any]:
        tip = node.get_tip()
        if tip.height == 0:
            raise api_error(404, "not_found", "no blocks yet: no state is committed in a header")
        block = node.store.get_block(tip.height)
        commit = node.store.get_commit(tip.height)
        if block is None or commit is None:
            raise api_error(503, "unavailable", "tip block is not stored")
        root = block.header.state_root
        value = node.tree.get_value(root, namespace, key)
        return {
            "namespace": namespace,
            "key": key.hex(),
            "value": None if value is None else value.hex(),
            "state_height": tip.height - 1,
            "proof": to_json_value(node.tree.get_proof(root, namespace, key).to_wire()),
            "header": header_view(node.suite, block.header),
            "commit": commit_view(commit),
        }

    return proven
