"""The HTTP protocol the node serves with: uvicorn's, except that a request it cannot even parse (bytes that are not
HTTP, a request line longer than its parser takes) is answered with the API's JSON error shape instead of
uvicorn's plain text — every client error of the API reads the same (`{"error", "message"}`)."""

from __future__ import annotations

import json
from typing import Any

MALFORMED_MESSAGE = "the request line or headers are not valid HTTP/1.1 (raw non-ASCII bytes in the path, or " \
                    "a request line or header over the parser's limit); percent-encode the path"
"""What a client is told when its bytes do not parse as HTTP."""


def compute_error_body(message: str) -> bytes:
    """The JSON error body of an unparseable request."""
    return json.dumps({"error": "bad_request", "message": f"{MALFORMED_MESSAGE} ({message})"}).encode()


def get_protocol_class() -> Any:
    """uvicorn's fastest available HTTP/1.1 protocol with JSON 400 answers."""
    try:
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
    except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol

    class JsonErrorHttpToolsProtocol(HttpToolsProtocol):
        def send_400_response(self, msg: str) -> None:
            body = compute_error_body(msg)
            content = [STATUS_LINE[400]]
            for name, value in self.server_state.default_headers:
                content.extend([name, b": ", value, b"\r\n"])
            content.extend([b"content-type: application/json\r\n",
                            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                            b"connection: close\r\n", b"\r\n", body])
            self.transport.write(b"".join(content))
            self.transport.close()

    return JsonErrorHttpToolsProtocol
