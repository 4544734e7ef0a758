"""The HTTP + WebSocket API (ASGI, FastAPI; OpenAPI at /docs).

Every client mistake — malformed bytes, a forged signature, a transaction for another chain, an unknown height —
is answered with a 4xx and a JSON body ``{"error": code, "message": …}`` naming the problem. A 500 would mean a
bug in the node, never bad input.
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from qilian import __version__
from qilian.api.errors import ApiError
from qilian.api.explorer import IndexOff, IndexReads, get_static_dir, open_node_index
from qilian.api.explorer import make_router as make_explorer_router
from qilian.api.metrics import NodeMetrics, get_readiness
from qilian.api.openapi import BATCH_BODY, TX_BODY, process_error_responses
from qilian.api.readside import MAX_EVIDENCE_PAGE, ReadSide
from qilian.api.views import receipt_view
from qilian.execution.rules import TxRejected
from qilian.indexer.service import EmbeddedIndexer, Indexer
from qilian.mempool.pool import MempoolFull
from qilian.node.node import Node
from qilian.types.codec import CodecError, decode_raw
from qilian.types.genesis_json import genesis_to_json


def _err(status: int, code: str, message: str, fields: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **(fields or {})}, status_code=status)


def _parse_hash(text: str, what: str = "hash") -> bytes:
    t = text.lower().removeprefix("0x")
    if len(t) != 64:
        raise ApiError(400, "bad_hash", f"{what} must be 64 hex characters, got {len(t)}")
    try:
        return bytes.fromhex(t)
    except ValueError:
        raise ApiError(400, "bad_hash", f"{what} is not hex") from None


BODY_READ_TIMEOUT_S = 30.0
"""Longest wait for the next piece of a request body; a body that stops arriving is answered 408 and the
connection freed (a slow-loris client cannot hold a slot for ever)."""
MAX_BATCH_TXS = 5000
"""Most transactions in one POST /txs/batch."""
MAX_BATCH_BYTES = 16 * 1024 * 1024
"""Largest POST /txs/batch body."""


def _consensus_status(node: Node) -> dict[str, Any]:
    """Where consensus is and who this node talks to (empty before the node runs)."""
    d = node.consensus
    if d is None:
        return {}
    t = d.transport
    return {"consensus": {"height": d.core.height, "round": d.core.round, "step": int(d.core.step),
                          "blocks_synced": d.blocks_synced},
            "txs_committed": node.txs_committed,
            "peers": sorted(p.spec.name for p in t.peers.values()) if t else [],
            "p2p_violations": t.violations if t else 0,
            "p2p_refused": t.refused if t else 0}


def create_app(node: Node) -> FastAPI:
    """The API of one node."""
    suite = node.suite
    reads = ReadSide(node.store, suite, node.genesis)
    index = open_node_index(node)
    embedded = None if isinstance(index, IndexOff) else EmbeddedIndexer(Indexer(node.store, suite, index))
    index_reads = IndexReads()
    # From the indexer's last pass, not a query: /metrics runs on the event loop.
    metrics = NodeMetrics(node, lambda: {} if embedded is None else {"qilian_indexed_height": embedded.last_height,
                                                                     "qilian_indexer_errors": embedded.errors})
    node.commit_hooks.append(metrics.on_commit)
    if embedded is not None:
        node.commit_hooks.append(embedded.on_commit)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if embedded is not None:
            embedded.start()
        try:
            yield
        finally:
            if embedded is not None:
                await embedded.stop()
            index_reads.close()
            index.close()

    app = FastAPI(
        title="Qilian node API",
        version=__version__,
        description="Submit transactions, read blocks, transactions and state with proofs, follow events. "
                    "The explorer is at /explorer/.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.reads = reads
    app.state.index = index
    app.middleware("http")(metrics.middleware)
    static = get_static_dir()
    app.mount("/static", StaticFiles(directory=static), name="static")
    app.mount("/explorer/", StaticFiles(directory=static / "explorer", html=True), name="explorer")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        """Swagger UI from the packaged assets (no CDN: works offline)."""
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Qilian node API",
                                   swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger/swagger-ui.css",
                                   swagger_favicon_url="/static/swagger/favicon-32x32.png")

    @app.get("/", include_in_schema=False)
    @app.get("/explorer", include_in_schema=False)
    async def to_explorer() -> RedirectResponse:
        return RedirectResponse("/explorer/")

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def get_metrics() -> Response:
        return metrics.render()

    @app.get("/health", summary="Liveness: the process serves requests")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "height": node.get_tip().height}

    @app.get("/ready", summary="Readiness: consensus runs, > 2/3 of the power reachable, not catching up")
    async def ready() -> JSONResponse:
        ok, doc = get_readiness(node)
        if ok:
            return JSONResponse({"status": "ready", **doc})
        return JSONResponse({"error": "not_ready", "message": doc.get("reason", "not ready"), **doc},
                            status_code=503)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _err(exc.status, exc.code, exc.message, exc.fields)

    @app.exception_handler(CodecError)
    async def _codec_error(_: Request, exc: CodecError) -> JSONResponse:
        return _err(400, "malformed", str(exc))

    @app.exception_handler(TxRejected)
    async def _rejected(_: Request, exc: TxRejected) -> JSONResponse:
        status = {"not_member": 403, "too_large": 413}.get(exc.code, 400)
        return _err(status, exc.code, exc.message)

    @app.exception_handler(RecursionError)
    async def _too_deep(_: Request, exc: RecursionError) -> JSONResponse:
        return _err(400, "too_deep", "the request nests values too deeply")

    @app.exception_handler(MempoolFull)
    async def _full(_: Request, exc: MempoolFull) -> JSONResponse:
        return _err(429, "mempool_full", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(x) for x in first.get("loc", ()))
        return _err(422, "invalid_request", f"{loc}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _err(exc.status_code, "http_error", str(exc.detail))

    @app.get("/status", summary="Chain and node status")
    async def status() -> dict[str, Any]:
        tip = node.get_tip()
        return {
            "chain_id": node.genesis.chain_id,
            "suite": suite.name,
            "genesis_hash": node.genesis_hash.hex(),
            "node": node.config.name,
            "validator_address": node.key.address.hex(),
            "is_validator": node.validator is not None,
            "height": tip.height,
            "block_id": tip.block_id.hex(),
            "time_ms": tip.time_ms,
            "state_root": tip.state_root.hex(),
            "keep_states": node.store.keep_states,
            "oldest_state_height": node.get_oldest_state_height(),
            "mempool_size": len(node.mempool),
            "version": __version__,
            "python": platform.python_version(),
            **_consensus_status(node),
            **_state_sync_status(node),
        }

    @app.get("/genesis", summary="The chain's genesis document")
    async def genesis() -> JSONResponse:
        import json

        return JSONResponse(json.loads(genesis_to_json(node.genesis)))

    @app.post(
        "/txs",
        summary="Submit a signed transaction",
        openapi_extra={"requestBody": TX_BODY},
        description="Body: the canonical transaction bytes (application/octet-stream) or JSON {\"tx\": hex}. "
        "wait=commit blocks until the transaction is in a committed block (or the timeout passes).",
    )
    async def submit_tx(
        request: Request,
        wait: Annotated[Literal["none", "commit"], Query()] = "none",
        timeout: Annotated[float, Query(gt=0, le=600)] = 30.0,
    ) -> JSONResponse:
        body = await _read_body(request, node.config.max_request_bytes)
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            import json

            try:
                doc = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ApiError(400, "malformed", f"body is not JSON: {exc}") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("tx"), str):
                raise ApiError(400, "malformed", 'JSON body must be {"tx": "<hex of the encoded transaction>"}')
            try:
                raw = bytes.fromhex(doc["tx"])
            except ValueError:
                raise ApiError(400, "malformed", "tx is not hex") from None
        else:
            raw = body
        sub = await node.process_submit(raw)
        out: dict[str, Any] = {"hash": sub.tx_hash.hex(), "status": sub.status}
        if wait == "commit":
            loc = await node.wait_for_commit(sub.tx_hash, min(timeout, node.config.max_wait_s))
            if loc is None:
                out["status"] = "pending"
                return JSONResponse(out, status_code=202)
            out["status"] = "committed"
            out["height"], out["index"] = loc
            receipts = node.store.get_receipts(loc[0]) or []
            if loc[1] < len(receipts):
                out["receipt"] = receipt_view(receipts[loc[1]])
        elif sub.status == "committed":
            loc2 = node.store.get_tx_location(sub.tx_hash)
            if loc2:
                out["height"], out["index"] = loc2
        return JSONResponse(out, status_code=200 if out["status"] == "committed" else 202)

    @app.post(
        "/txs/batch",
        summary="Submit many signed transactions at once",
        openapi_extra={"requestBody": BATCH_BODY},
        description="Body: the canonical encoding of an array of encoded transactions (at most MAX_BATCH_TXS, "
                    "MAX_BATCH_BYTES in all). Each is admitted exactly as by POST /txs; the answer counts them and "
                    "lists the rejected ones by index. If the mempool fills up, the rest of the batch is not "
                    "admitted (`mempool_full_at`); 429 when not even the first fitted.",
    )
    async def submit_batch(request: Request) -> JSONResponse:
        body = await _read_body(request, MAX_BATCH_BYTES)
        try:
            raws = decode_raw(body, max_bytes=MAX_BATCH_BYTES)
        except CodecError as exc:
            raise ApiError(400, "malformed", f"body is not an encoded array: {exc}") from None
        if type(raws) is not list or not all(type(r) is bytes for r in raws):
            raise ApiError(400, "malformed", "body must encode an array of byte strings (encoded transactions)")
        if len(raws) > MAX_BATCH_TXS:
            raise ApiError(413, "too_large", f"{len(raws)} transactions; a batch holds at most {MAX_BATCH_TXS}")
        res = await node.process_submit_batch(raws)
        counts = {"accepted": 0, "known": 0, "committed": 0}
        rejected = []
        for i, (th, status, message) in enumerate(res.results):
            if status in counts:
                counts[status] += 1
            else:
                rejected.append({"index": i, "hash": th.hex() if th else None, "error": status, "message": message})
        doc = {**counts, "rejected": rejected, "mempool_full_at": res.full_at}
        return JSONResponse(doc, status_code=429 if res.full_at == 0 else 200)

    @app.get("/txs/{tx_hash}", summary="A committed transaction with its receipt and inclusion proofs")
    async def get_tx(tx_hash: str) -> dict[str, Any]:
        th = _parse_hash(tx_hash)
        doc = reads.get_tx(th)
        if doc is None:
            if node.mempool.is_known(th):
                raise ApiError(404, "pending", "transaction is in the mempool, not yet committed")
            raise ApiError(404, "not_found", f"no committed transaction {th.hex()}")
        return doc

    @app.get("/blocks/latest", summary="The latest committed block")
    async def latest_block() -> dict[str, Any]:
        return reads.get_block(None)

    @app.get("/blocks/{height}/tx_hashes", summary="Hashes and receipt statuses of a block's transactions")
    async def get_block_tx_hashes(height: int) -> dict[str, Any]:
        if not 1 <= height < 2**63:
            raise ApiError(400, "bad_height", "a height is an integer from 1 to 2**63-1")
        return reads.get_block_tx_hashes(height)

    @app.get("/evidence", summary="Committed equivocation evidence, newest first")
    async def get_evidence(limit: Annotated[int, Query(ge=1, le=MAX_EVIDENCE_PAGE)] = 20,
                           validator: Annotated[str | None, Query(max_length=42)] = None) -> dict[str, Any]:
        address = None
        if validator is not None:
            v = validator.lower().removeprefix("0x")
            if len(v) != 40 or any(c not in "0123456789abcdef" for c in v):
                raise ApiError(400, "bad_address", "a validator is 40 hex digits")
            address = bytes.fromhex(v)
        return reads.get_evidence(limit, address)

    @app.get("/blocks/{height}", summary="A committed block by height")
    async def get_block(height: int) -> dict[str, Any]:
        if not 1 <= height < 2**63:
            raise ApiError(400, "bad_height", "a height is an integer from 1 to 2**63-1")
        return reads.get_block(height)

    @app.get(
        "/state/{namespace}/{key:path}",
        summary="A state value with its proof",
        description="The value (or its absence) as of the state root in the latest header (or the header of "
        "`height`: the state block `height`'s transactions ran against), with a proof against that root, the "
        "header and its commit. key is text, or hex with encoding=hex.",
    )
    async def get_state(
        request: Request, namespace: str, key: str, encoding: Annotated[Literal["text", "hex"], Query()] = "text",
        height: int | None = None,
    ) -> dict[str, Any]:
        if encoding == "hex":
            try:
                kb = bytes.fromhex(key.removeprefix("0x"))
            except ValueError:
                raise ApiError(400, "bad_key", "key is not hex") from None
        else:
            kb = get_raw_path_key(request)
        if len(namespace.encode()) > 255 or len(kb) > 1024:
            raise ApiError(400, "bad_key", "namespace is at most 255 bytes and key at most 1024 bytes")
        if height is not None and not 1 <= height < 2**63:
            raise ApiError(400, "bad_height", "a height is an integer from 1 to 2**63-1")
        return reads.get_state(namespace, kb, height)

    @app.websocket("/events")
    async def events(ws: WebSocket) -> None:
        await ws.accept()
        try:
            q = node.subscribe()
        except RuntimeError as exc:
            await ws.send_json({"type": "error", "message": str(exc)})
            await ws.close(code=1013)
            return
        source = ws.query_params.get("source")
        from_text = ws.query_params.get("from_height")
        if from_text is not None and (not from_text.isdigit() or not 1 <= int(from_text) < 2**63):
            await ws.send_json({"type": "error", "message": "from_height is a height from 1"})
            node.unsubscribe(q)
            await ws.close(code=1008)
            return
        from_height = int(from_text) if from_text else None

        async def replay() -> int:
            """Stored blocks from ``from_height`` to the tip, as the live feed would have sent them; subscribed
            first, so nothing committed meanwhile is missed (live messages at or below the replayed tip are
            skipped). Returns the last replayed height."""
            assert from_height is not None
            tip = node.get_tip().height
            start = max(from_height, tip - MAX_EVENT_REPLAY_BLOCKS + 1)
            if start > from_height:
                await ws.send_json({"type": "truncated", "from_height": start,
                                    "message": f"replay is limited to the last {MAX_EVENT_REPLAY_BLOCKS} blocks"})
            for h in range(start, tip + 1):
                for msg in get_stored_messages(node, h):
                    if not (source and msg.get("type") == "event" and msg.get("source") != source):
                        await ws.send_json(msg)
            await ws.send_json({"type": "caught_up", "height": tip})
            return tip

        async def watch_close() -> None:
            """Receive until the client goes: a closed subscriber frees its slot at once, not at the next event
            (an idle chain would otherwise keep every closed client's slot)."""
            with contextlib.suppress(Exception):
                while True:
                    if (await ws.receive()).get("type") == "websocket.disconnect":
                        return

        async def forward() -> None:
            replayed = await replay() if from_height is not None else 0
            while True:
                msg = await q.get()
                if source and msg.get("type") == "event" and msg.get("source") != source:
                    continue
                if int(msg.get("height", replayed + 1)) <= replayed:
                    continue
                await ws.send_json(msg)
                if msg.get("type") == "overflow":
                    await ws.close(code=1013)
                    return

        tasks = [asyncio.create_task(watch_close()), asyncio.create_task(forward())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except (WebSocketDisconnect, RuntimeError, asyncio.CancelledError):
            pass
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t
            node.unsubscribe(q)
            with contextlib.suppress(Exception):
                await ws.close()

    from qilian.api.contracts import make_router

    app.include_router(make_router(node, ApiError, _read_body))
    from qilian.api.gov import make_gov_router

    app.include_router(make_gov_router(node, ApiError))
    app.include_router(make_explorer_router(node, reads, index, index_reads))
    from qilian.apps.copyright.api import make_copyright_router
    from qilian.apps.iot.api import make_iot_router
    from qilian.apps.trace.api import make_trace_router

    app.include_router(make_trace_router(node, ApiError))
    app.include_router(make_iot_router(node, ApiError))
    app.include_router(make_copyright_router(node, ApiError))
    from qilian.apps.payments.api import make_payments_router

    app.include_router(make_payments_router(node, ApiError))
    from qilian.apps.identity.api import make_identity_router

    app.include_router(make_identity_router(node, ApiError))
    from qilian.apps.registry.api import make_registry_router

    app.include_router(make_registry_router(node, ApiError))

    def get_openapi_doc() -> dict[str, Any]:
        """The OpenAPI document with the raw-body routes' request bodies and the one error shape."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            app.openapi_schema = process_error_responses(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = get_openapi_doc  # type: ignore[method-assign]
    return app


MAX_EVENT_REPLAY_BLOCKS = 100_000
"""Most stored blocks one ``/events?from_height=`` connection replays before following live."""


def get_stored_messages(node: Node, height: int) -> list[dict[str, Any]]:
    """The /events messages of a committed block, rebuilt from the store (the same shape as the live feed)."""
    from qilian.api.views import event_view, evidence_view

    block = node.store.get_block(height)
    commit = node.store.get_commit(height)
    receipts = node.store.get_receipts(height)
    if block is None or commit is None or receipts is None:
        return []
    out: list[dict[str, Any]] = [{"type": "block", "height": height, "block_id": commit.block_id.hex(),
                                  "tx_count": len(block.txs), "time_ms": block.header.time_ms}]
    out += [{"type": "evidence", "committed_at": height, **evidence_view(node.suite, item)} for item in block.evidence]
    for r in receipts:
        for ev in r.events:
            out.append({"type": "event", "height": height, "tx_hash": r.tx_hash.hex(), **event_view(ev)})
    return out


def get_raw_path_key(request: Request) -> bytes:
    """The state key of ``/state/{namespace}/{key}`` as the exact bytes the client percent-encoded: taken from
    the raw path, so ``%ff%fe`` is the key ``ff fe`` and never U+FFFD text standing for some other key."""
    from urllib.parse import unquote_to_bytes

    raw = request.scope.get("raw_path") or request.url.path.encode()
    parts = raw.split(b"?", 1)[0].split(b"/", 3)  # b"", b"state", namespace, key
    if len(parts) != 4 or not parts[3]:
        raise ApiError(400, "bad_key", "the path is /state/{namespace}/{key}")
    return unquote_to_bytes(parts[3])


async def _read_body(request: Request, limit: int) -> bytes:
    """Read a request body, refusing it as soon as it passes the limit (never buffers more than that), and
    giving up with 408 when the client stops sending for BODY_READ_TIMEOUT_S."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"request body of {declared} bytes is over the limit of {limit}")
    chunks = []
    size = 0
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), BODY_READ_TIMEOUT_S)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise ApiError(408, "timeout",
                           f"the request body stopped arriving for {BODY_READ_TIMEOUT_S:.0f} s") from None
        except ClientDisconnect:
            # The client gave up mid-body (its own timeout, under load): nothing to answer, and not a server
            # fault — without this, every such request logged "Exception in ASGI application" and a traceback.
            raise ApiError(400, "client_disconnected",
                           "the client closed the connection before the request body was complete") from None
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _state_sync_status(node: Node) -> dict[str, Any]:
    """A state-synced node says so in ``/status``: the snapshot height, the first block it holds, and the figures
    of the sync this process ran (if it did)."""
    rec = node.sync_record
    if rec is None:
        return {}
    return {"state_sync": {"snapshot_height": rec.height, "first_block": rec.window_start,
                           "report": node.state_sync_report}}
