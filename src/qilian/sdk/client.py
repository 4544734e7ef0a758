"""Python client for a Qilian node: build and sign transactions, submit them, read back with proofs."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from qilian.sdk.keys import KeyPair
from qilian.types.core import Transaction, TxBody, sign_tx

DEFAULT_EXPIRY_BLOCKS = 500
"""How far ahead a client sets ``expires_at`` by default (the chain caps it by ``tx_validity_blocks``)."""


class ApiFailure(Exception):
    """The node answered with an error; ``code`` and ``message`` come from its JSON body."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class StatePruned(ApiFailure):
    """410 ``state_pruned``: the node no longer keeps the state of the height asked for (it keeps its last
    ``keep_states`` states); an archive node has it. ``oldest_height``: the oldest height it still proves, when the
    node said."""

    def __init__(self, status: int, code: str, message: str, oldest_height: int | None):
        super().__init__(status, code, message)
        self.oldest_height = oldest_height


def build_tx(key: KeyPair, chain_id: str, to: str, method: str, args: list[Any], expires_at: int,
             nonce: int | None = None) -> Transaction:
    """Sign a call. The nonce is random unless given, so identical calls are still distinct transactions."""
    body = TxBody(
        chain_id=chain_id,
        sender=key.public_key,
        nonce=secrets.randbits(63) if nonce is None else nonce,
        expires_at=expires_at,
        to=to,
        method=method,
        args=list(args),
    )
    return sign_tx(key.suite, key.private_key, body)


class Client:
    """A synchronous HTTP client of one node."""

    def __init__(self, url: str, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _json(self, r: httpx.Response) -> Any:
        try:
            doc = r.json()
        except ValueError:
            doc = None
        if r.status_code >= 400:
            if isinstance(doc, dict):
                if doc.get("error") == "state_pruned":
                    oldest = doc.get("oldest_height")
                    raise StatePruned(r.status_code, "state_pruned", str(doc.get("message")),
                                      oldest if type(oldest) is int else None)
                raise ApiFailure(r.status_code, str(doc.get("error")), str(doc.get("message")))
            raise ApiFailure(r.status_code, "http_error", r.text[:200])
        return doc

    def get_status(self) -> dict[str, Any]:
        return self._json(self.http.get("/status"))

    def get_genesis_json(self) -> dict[str, Any]:
        return self._json(self.http.get("/genesis"))

    def submit(self, tx: Transaction, wait: str = "none", timeout: float = 30.0) -> dict[str, Any]:
        r = self.http.post(
            "/txs",
            params={"wait": wait, "timeout": timeout},
            content=tx.encode(),
            headers={"content-type": "application/octet-stream"},
            timeout=timeout + 10,
        )
        return self._json(r)

    def call(self, key: KeyPair, to: str, method: str, args: list[Any], wait: str = "commit",
             expiry_blocks: int = DEFAULT_EXPIRY_BLOCKS) -> dict[str, Any]:
        """Build, sign and submit a call against the node's current height."""
        status = self.get_status()
        tx = build_tx(key, status["chain_id"], to, method, args, status["height"] + expiry_blocks)
        return self.submit(tx, wait=wait)

    def get_tx(self, tx_hash: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/txs/{tx_hash}"))

    def query_contract(self, address: str, method: str, args: list[Any], fuel: int | None = None
                       ) -> dict[str, Any]:
        """Read-only contract call (no transaction)."""
        from qilian.types.codec import to_json_value

        doc: dict[str, Any] = {"method": method, "args": to_json_value(list(args))}
        if fuel is not None:
            doc["fuel"] = fuel
        return self._json(self.http.post(f"/contracts/{address}/query", json=doc))

    def get_contract(self, address: str) -> dict[str, Any]:
        """A contract's source, deployer, version and exported functions."""
        return self._json(self.http.get(f"/contracts/{address}"))

    def get_block(self, height: int | str = "latest") -> dict[str, Any]:
        return self._json(self.http.get(f"/blocks/{height}"))

    def get_validator_path(self, to: int) -> dict[str, Any]:
        """Validator-set changes from genesis up to height ``to`` (checked by ``verify_validator_path``)."""
        return self._json(self.http.get("/gov/validators/path", params={"to": to}))

    def get_state(self, namespace: str, key: bytes, height: int | None = None) -> dict[str, Any]:
        """A state value with its proof against the latest header, or the header of ``height`` (the state that
        block's transactions ran against)."""
        params: dict[str, Any] = {"encoding": "hex"}
        if height is not None:
            params["height"] = height
        return self._json(self.http.get(f"/state/{namespace}/{key.hex()}", params=params))
