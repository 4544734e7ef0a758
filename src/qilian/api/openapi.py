"""What the OpenAPI document says about bodies the handlers read themselves, and about errors.

Routes that take canonical bytes read the raw body (FastAPI cannot infer a schema for it), so their request bodies
are declared here; every route's 4xx/5xx answers share one shape, declared once and attached to every operation,
so a client generated from /openapi.json knows what an error looks like."""

from __future__ import annotations

from typing import Any, Final

ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "A stable code (docs/api.md lists them), e.g. bad_hash."},
        "message": {"type": "string", "description": "What was wrong, for people."},
    },
}
"""The body of every error answer."""

ERROR_STATUSES: Final = {"400": "Bad input (the code names the problem)", "403": "Not a member",
                         "404": "Not found", "408": "The request body stopped arriving",
                         "413": "Too large", "422": "Invalid request parameter", "429": "Busy or mempool full",
                         "503": "Not available yet"}
"""Error statuses documented on every operation."""

TX_BODY: Final[dict[str, Any]] = {
    "required": True,
    "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary",
                                                "description": "The canonical encoding of a signed transaction "
                                                               "(docs/spec/encoding.md)."}},
        "application/json": {"schema": {"type": "object", "required": ["tx"],
                                        "properties": {"tx": {"type": "string", "description": "Hex of the "
                                                                                             "encoded transaction."}}}},
    },
}
"""POST /txs."""

BATCH_BODY: Final[dict[str, Any]] = {
    "required": True,
    "content": {"application/octet-stream": {"schema": {
        "type": "string", "format": "binary",
        "description": "The canonical encoding of an array of byte strings, each an encoded signed transaction."}}},
}
"""POST /txs/batch."""

QUERY_BODY: Final[dict[str, Any]] = {
    "required": True,
    "content": {"application/json": {"schema": {
        "type": "object", "required": ["method"],
        "properties": {
            "method": {"type": "string", "description": "An exported function."},
            "args": {"type": "array", "description": 'Arguments in the JSON form of codec values (bytes as '
                                                     '{"hex": …}).'},
            "fuel": {"type": "integer", "minimum": 1, "maximum": 5_000_000},
            "sender": {"type": "string", "pattern": "^[0-9a-f]{40}$", "description": "ctx.sender of the query."},
        }}}},
}
"""POST /contracts/{address}/query."""


def process_error_responses(doc: dict[str, Any]) -> dict[str, Any]:
    """Add the shared error schema and the error statuses to every operation of an OpenAPI document; replace
    FastAPI's default 422 body (which is not what this API answers) with the real one."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for path in doc.get("paths", {}).values():
        for op in path.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            for status, what in ERROR_STATUSES.items():
                op["responses"][status] = {"description": what, **ref}
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return doc
