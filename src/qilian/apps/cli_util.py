"""What the apps' CLI commands share: pre-check a call on the node (so a refusal names the problem before
anything is signed or sent), send it, and read JSON files with clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from qilian.cli.main import _fail


def process_call(node: str, key: Any, module: str, method: str, args: list[Any]) -> dict[str, Any]:
    """Pre-check ``module.method(args)`` against the node's latest state (:func:`qilian.apps.appcli.process_check`),
    then send it and wait for the commit; any refusal exits with its reason (nothing is written)."""
    from qilian.apps.appcli import process_check
    from qilian.cli.contract_cmd import _check_receipt, _send

    process_check(node, key, module, method, args)
    res = _send(node, key, module, method, args)
    _check_receipt(res)
    return res


def get_json(node: str, path: str, params: dict[str, Any] | None = None) -> Any:
    """GET a JSON document from the node; an error answer exits naming it."""
    from qilian.sdk.client import ApiFailure, Client

    try:
        with Client(node) as c:
            return c._json(c.http.get(path, params=params))
    except ApiFailure as exc:
        _fail(f"{exc.code}: {exc.message}")
    except (OSError, httpx.HTTPError) as exc:
        _fail(f"cannot reach {node}: {exc}")
    raise AssertionError("unreachable")


def read_json(path: Path) -> Any:
    """A JSON file, or a clear error."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        _fail(f"cannot read {path}: {exc}")
    raise AssertionError("unreachable")


def write_json(path: Path, doc: Any) -> None:
    """Write a JSON document."""
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def get_no_floats(value: Any, what: str) -> Any:
    """``value`` from JSON, refusing floats with a message that says what to use instead."""
    if isinstance(value, float):
        _fail(f"{what}: floats are not allowed; write sensor values and amounts as integers or decimal strings "
              f"like \"4.5\"")
    if isinstance(value, list):
        return [get_no_floats(v, what) for v in value]
    if isinstance(value, dict):
        return {str(k): get_no_floats(v, what) for k, v in value.items()}
    return value
