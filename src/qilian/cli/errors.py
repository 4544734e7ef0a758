"""One error layer for every ``qilian`` command: an ordinary mistake gets one line naming what was wrong and what
to do, never a traceback.

Commands raise :class:`UserError` for problems they recognise; everything else that escapes a command is
translated here by exception class (a node that does not answer, a file that is not there, text that is not
UTF-8 …). Only an unexpected exception is reported as an internal error, still without a traceback unless
``QILIAN_DEBUG=1`` is set — then the original exception propagates untouched, for a bug report."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from typing import Any, Final

DEBUG_ENV: Final = "QILIAN_DEBUG"
"""Set to 1 to see the traceback of any error."""
EXIT_USER_ERROR: Final = 1
"""Exit status of a command that failed because of its input or its environment."""
EXIT_INTERNAL: Final = 70
"""Exit status of an unexpected failure (EX_SOFTWARE)."""


class UserError(Exception):
    """A problem the user can fix; the message says what was wrong and what to do."""


def is_debug() -> bool:
    """Whether the user asked for tracebacks."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _os_error(exc: OSError) -> str:
    where = f" {exc.filename}" if exc.filename else ""
    if isinstance(exc, FileNotFoundError):
        return f"no such file or directory:{where}"
    if isinstance(exc, IsADirectoryError):
        return f"{where.strip()} is a directory; a file was expected"
    if isinstance(exc, NotADirectoryError):
        return f"a path component of{where} is not a directory"
    if isinstance(exc, PermissionError):
        return f"permission denied:{where}"
    if isinstance(exc, FileExistsError):
        return f"{where.strip()} already exists; refusing to overwrite it"
    if exc.errno == errno.EADDRINUSE:
        return "address already in use: another process listens on that port (is a node already running?)"
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device{where}"
    return f"{exc.strerror or type(exc).__name__}:{where}"


def _http_error(exc: Exception) -> str | None:
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is a dependency
        return None
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return "the node URL must look like http://127.0.0.1:8545 (with the scheme); check --node or QILIAN_NODE"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        url = _request_url(exc)
        return (f"cannot reach the node{url}: is it running (`qilian up`, `qilian node start`)? check --node or "
                f"QILIAN_NODE")
    if isinstance(exc, httpx.TimeoutException):
        return f"the node{_request_url(exc)} did not answer in time; it may be overloaded or stopped"
    if isinstance(exc, httpx.HTTPError):
        return f"talking to the node{_request_url(exc)} failed: {type(exc).__name__}"
    return None


def _request_url(exc: Any) -> str:
    try:
        return f" at {exc.request.url.scheme}://{exc.request.url.netloc.decode()}"
    except (AttributeError, RuntimeError):
        return ""


def compute_message(exc: BaseException) -> str | None:
    """The one-line explanation of an exception a user can act on, or None for an unexpected one."""
    if isinstance(exc, UserError):
        return str(exc)
    from qilian.sdk.client import ApiFailure

    if isinstance(exc, ApiFailure):
        return f"the node answered {exc.status} {exc.code}: {exc.message}"
    http = _http_error(exc) if isinstance(exc, Exception) else None
    if http is not None:
        return http
    if isinstance(exc, UnicodeDecodeError):
        return "a file or argument is not UTF-8 text"
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
    if isinstance(exc, OSError):
        return _os_error(exc)
    from qilian.storage.engine import EngineBusy
    from qilian.storage.store import StoreLayoutError, StoreMissing

    # A data directory of another layout, a store held by a running node, a store not created yet: each message
    # says what to do (resync, stop the node, start it once), so none of them is an internal error.
    if isinstance(exc, StoreLayoutError | EngineBusy | StoreMissing):
        return str(exc)
    from qilian.crypto import CryptoError
    from qilian.types.codec import CodecError

    if isinstance(exc, CryptoError):
        return f"key or signature problem: {exc}"
    if isinstance(exc, CodecError):
        return f"value cannot be encoded: {exc}"
    return None


def run_guarded(entry: Callable[[], Any], report: Callable[[str], None]) -> int:
    """Run a CLI entry point; returns the exit status. ``report`` prints one error line (to stderr)."""
    try:
        entry()
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_USER_ERROR)
    except KeyboardInterrupt:
        report("interrupted")
        return 130
    except Exception as exc:
        if is_debug():
            raise
        msg = compute_message(exc)
        if msg is not None:
            report(msg)
            return EXIT_USER_ERROR
        report(f"internal error ({type(exc).__name__}): {str(exc)[:300]} — run again with {DEBUG_ENV}=1 for the "
               f"traceback and report it")
        return EXIT_INTERNAL
    return 0
