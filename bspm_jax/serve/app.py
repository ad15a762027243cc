"""The HTTP API of ``bspm serve``: one saved model's recommendations as JSON, on FastAPI.

Every answer is JSON; every client mistake is a 4xx whose body names it (``{"error": ...}``):
401 without the bearer token (when the server has one), 404 for unknown users, 413 for a body
over the limit, 400 for malformed JSON, 422 for any other invalid request (unknown items,
``k`` out of bounds, histories for a model that cannot score them).
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._version import __version__
from ..errors import BSPMError
from .batcher import MicroBatcher
from .metrics import ServerMetrics
from .model import ServedModel, UnknownIdError

LOG = logging.getLogger("bspm_jax.serve")
Id = StrictStr | StrictInt


class ItemScore(BaseModel):
    item: Id
    score: float


class Recommendation(BaseModel):
    """One user's list, best first."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"user": "u42", "items": [{"item": "i7", "score": 0.93}, {"item": "i3", "score": 0.88}]}]})
    user: Id
    items: list[ItemScore]


class BatchRequest(BaseModel):
    """Known users by id, and/or new users' histories (a label and item ids each)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"users": ["u42", "u7"], "k": 10}, {"histories": {"visitor-1": ["i7", "i3", "i12"]}, "k": 5}]})
    users: list[Id] | None = None
    histories: dict[str, list[Id]] | None = None
    k: int = Field(10, ge=1)
    keep_seen: bool = False


class BatchResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"recommendations": [{"user": "u42", "items": [{"item": "i7", "score": 0.93}]},
                             {"user": "visitor-1", "items": [{"item": "i5", "score": 0.41}]}]}]})
    recommendations: list[Recommendation]


class ModelInfo(BaseModel):
    model: str
    settings: dict[str, Any]
    train_digest: str
    users: int
    items: int
    max_k: int
    scores_histories: bool
    version: str
    loaded_at: str
    path: str


class ErrorBody(BaseModel):
    error: str
    ids: list[Id] | None = None


class ApiError(Exception):
    """A client mistake: its status, message and the ids it names."""

    def __init__(self, status: int, message: str, ids: list[Any] | None = None):
        super().__init__(message)
        self.status, self.message, self.ids = status, message, ids


class Limits(BaseModel):
    """What one request may ask: ``max_k`` items per list, ``max_users`` users or histories, ``max_history`` items
    per history, ``max_body`` bytes of body."""

    max_k: int = 100
    max_users: int = 1000
    max_history: int = 10_000
    max_body: int = 1_000_000


class _State:
    """The served model (swapped whole by a reload), and what reloads it."""

    def __init__(self, served: ServedModel, load: Callable[[], ServedModel]):
        self.served = served
        self.load = load
        self.lock = threading.Lock()


ERRORS = {400: {"model": ErrorBody, "description": "malformed JSON"},
          401: {"model": ErrorBody, "description": "missing or wrong bearer token"},
          404: {"model": ErrorBody, "description": "unknown user"},
          413: {"model": ErrorBody, "description": "request body too large"},
          422: {"model": ErrorBody, "description": "invalid request (unknown items, k out of bounds, ...)"}}


def create_app(served: ServedModel, load: Callable[[], ServedModel] | None = None, token: str | None = None,
               limits: Limits | None = None, max_wait: float = 0.002) -> FastAPI:
    """The application serving ``served``; ``load`` loads the model folder again (``POST /v1/reload``, SIGHUP);
    ``token``: the bearer token every endpoint but health requires (None: none)."""
    limits = limits or Limits()
    metrics = ServerMetrics()
    metrics.loaded.set(time.time())
    batcher = MicroBatcher(max_wait=max_wait, observe=metrics.batch_rows.observe)
    state = _State(served, load or (lambda: served))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_reload(state, metrics)))
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no SIGHUP here
            pass
        yield
        await batcher.stop()

    app = FastAPI(title="bspm_jax recommendations", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, description="Top items for known users and new users' histories from one saved "
                  "bspm_jax model. Every error is JSON: {\"error\": ..., \"ids\": [...]}.")

    app.add_middleware(_Guard, token=token, max_body=limits.max_body, metrics=metrics, routes=app.router.routes)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError):
        return _error(err.status, err.message, err.ids)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        errors = err.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error(400, "malformed JSON body")
        return _error(422, "; ".join(_describe(e) for e in errors[:5]))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        if err.status_code == 400:  # a body that is not even text
            return _error(400, f"malformed JSON body ({err.detail})")
        return _error(err.status_code, str(err.detail))

    @app.get("/v1/health", summary="Is the server up (no token needed)")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/model", summary="The served model", response_model=ModelInfo, responses={401: ERRORS[401]})
    async def model_info() -> dict[str, Any]:
        return state.served.info()

    @app.get("/v1/users/{user_id}/recommendations", summary="A known user's top items", response_model=Recommendation,
             responses={k: ERRORS[k] for k in (401, 404, 422)})
    async def user_recommendations(user_id: str, k: int = Query(10, ge=1), keep_seen: bool = False) -> Response:
        served = state.served
        _check_k(k, limits, served)
        (row,) = _known(served, [user_id])
        (items,) = await _lists(served, batcher, np.asarray([row]), k, keep_seen)
        return _json(_recommendation(served.user_ids[row], items))

    @app.post("/v1/recommendations", summary="Top items for known users and new users' histories",
              response_model=BatchResponse, responses={k: ERRORS[k] for k in (400, 401, 404, 413, 422)})
    async def recommendations(body: BatchRequest) -> Response:
        served = state.served
        _check_k(body.k, limits, served)
        users, histories = body.users or [], body.histories or {}
        if not users and not histories:
            raise ApiError(422, "give users (known ids) or histories ({label: [item ids]})")
        if len(users) + len(histories) > limits.max_users:
            raise ApiError(422, f"{len(users) + len(histories):,} users and histories in one request; at most "
                                f"{limits.max_users:,}")
        rows = _known(served, users)
        out = [_recommendation(served.user_ids[r], items)
               for r, items in zip(rows, await _lists(served, batcher, rows, body.k, body.keep_seen))] if users else []
        if histories:
            if not served.scores_histories:
                raise ApiError(422, f"the {served.model.name} model scores only the users it was trained on: it "
                                    "cannot score new users' histories")
            long = [label for label, items in histories.items() if len(items) > limits.max_history]
            if long:
                raise ApiError(422, f"histories over {limits.max_history:,} items: {', '.join(long[:5])}", long[:5])
            try:
                indices = [np.unique(served.items(items)) for items in histories.values()]
            except UnknownIdError as err:
                raise ApiError(422, str(err), err.ids[:20]) from None
            lists = await batcher.submit(served, indices, [-1] * len(indices), body.k, body.keep_seen)
            out += [_recommendation(label, items) for label, items in zip(histories, lists)]
        return _json({"recommendations": out})

    @app.post("/v1/reload", summary="Load the model folder again and swap it in (token required)",
              responses={k: {"model": ErrorBody} for k in (401, 403, 409, 422)})
    async def reload() -> dict[str, Any]:
        if token is None:
            raise ApiError(403, "reloading over HTTP needs a token: start the server with --token-file (or send "
                                "it SIGHUP)")
        return await _reload(state, metrics)

    @app.get("/metrics", summary="Prometheus metrics (text format)", response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/docs", summary="This API, as a page (self-contained)", response_class=HTMLResponse,
             include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(openapi_page(app.openapi()))

    return app


async def _reload(state: _State, metrics: ServerMetrics) -> dict[str, Any]:
    """Load the folder again in a thread of its own (requests keep being answered by the old model), verify it, and
    swap it in; a folder that cannot be served is refused and the old model stays."""
    if not state.lock.acquire(blocking=False):
        raise ApiError(409, "a reload is already running")
    try:
        try:
            fresh = await asyncio.get_running_loop().run_in_executor(None, state.load)
        except BSPMError as err:
            metrics.reloads.labels("refused").inc()
            raise ApiError(422, f"reload refused, the served model is unchanged: {err}") from None
        state.served = fresh
        metrics.reloads.labels("swapped").inc()
        metrics.loaded.set(time.time())
        return {"status": "reloaded", **fresh.info()}
    finally:
        state.lock.release()


def _known(served: ServedModel, ids: list[Any]) -> np.ndarray:
    try:
        return served.users(ids)
    except UnknownIdError as err:
        raise ApiError(404, str(err), err.ids[:20]) from None


async def _lists(served: ServedModel, batcher: MicroBatcher, rows: np.ndarray, k: int, keep_seen: bool
                 ) -> list[list[tuple[Any, float]]]:
    """Known users' lists: read from the precomputed ranking, or scored now when they keep their seen items."""
    if not keep_seen:
        return served.known(rows, k)
    train = served.history.train
    return await batcher.submit(served, [train[r].indices.astype(np.int64) for r in rows], rows.tolist(), k, True)


def _check_k(k: int, limits: Limits, served: ServedModel) -> None:
    bound = min(limits.max_k, served.max_k)
    if k > bound:
        raise ApiError(422, f"k = {k} is above this server's largest, {bound}")


def _json(body: dict[str, Any]) -> Response:
    """An answer written as built (its shape is the declared model's; no second validation on the way out)."""
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


def _recommendation(user: Any, items: list[tuple[Any, float]]) -> dict[str, Any]:
    return {"user": user, "items": [{"item": i, "score": s} for i, s in items]}


def _error(status: int, message: str, ids: list[Any] | None = None, headers: dict[str, str] | None = None
           ) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if ids is not None:
        body["ids"] = [i if isinstance(i, (int, str)) else str(i) for i in ids]
    return JSONResponse(body, status_code=status, headers=headers)


class _Guard:
    """Pure ASGI middleware in front of every request: the bearer token, the body bound, JSON bodies whatever their
    declared type, metrics by endpoint, and a JSON 500 (logged) if the server itself fails."""

    def __init__(self, app: Any, token: str | None, max_body: int, metrics: ServerMetrics, routes: list[Any]):
        self.app, self.token, self.max_body, self.metrics, self.routes = app, token, max_body, metrics, routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def sent(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = None
        if self.token is not None and scope["path"] != "/v1/health" and not _authorised(headers, self.token):
            refusal = _error(401, "missing or wrong bearer token (Authorization: Bearer TOKEN)",
                             headers={"WWW-Authenticate": "Bearer"})
        elif _too_long(headers, self.max_body):
            refusal = _error(413, f"request body over {self.max_body:,} bytes (and a body must declare its length)")
        if refusal is not None:
            await refusal(scope, receive, sent)
        else:
            if scope["method"] == "POST" and "json" not in headers.get("content-type", ""):  # curl -d declares a form
                scope = {**scope, "headers": [*((k, v) for k, v in scope["headers"] if k.lower() != b"content-type"),
                                              (b"content-type", b"application/json")]}
            try:
                await self.app(scope, receive, sent)
            except Exception:  # noqa: BLE001 - a server fault: logged here, never a traceback to the client
                LOG.exception("%s %s failed", scope["method"], scope["path"])
                if status[0] == 500:
                    await _error(500, "internal error")(scope, receive, sent)
        self.metrics.observe(self._route(scope), scope["method"], status[0], time.perf_counter() - t0)

    def _route(self, scope: dict[str, Any]) -> str:
        """The endpoint's path template (a bounded set of metric labels), or ``other``."""
        for route in self.routes:
            match, _ = route.matches(scope)
            if match.name == "FULL":
                return getattr(route, "path", "other")
        return "other"


def _authorised(headers: dict[str, str], token: str) -> bool:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def _too_long(headers: dict[str, str], limit: int) -> bool:
    length = headers.get("content-length")
    if length is None:
        return "chunked" in headers.get("transfer-encoding", "").lower()  # a body of unknown length
    return not length.isdigit() or int(length) > limit


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
    return f"{where}: {error.get('msg', 'invalid')}"


def openapi_page(schema: dict[str, Any]) -> str:
    """The OpenAPI schema as one self-contained page: each endpoint, its parameters, body and answers."""
    parts = [f"<h1>{html.escape(schema['info']['title'])} {html.escape(schema['info']['version'])}</h1>",
             f"<p>{html.escape(schema['info'].get('description', ''))}</p>",
             "<p>The schema itself: <a href=\"/openapi.json\"><code>/openapi.json</code></a> (OpenAPI "
             f"{html.escape(schema.get('openapi', ''))}).</p>"]
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            parts.append(f"<h2><span class=\"m\">{method.upper()}</span> <code>{html.escape(path)}</code></h2>")
            parts.append(f"<p>{html.escape(op.get('summary', ''))}</p>")
            params = op.get("parameters", [])
            if params:
                rows = "".join(f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{html.escape(p['in'])}</td>"
                               f"<td>{'yes' if p.get('required') else 'no'}</td>"
                               f"<td><code>{html.escape(_type_of(schema, p.get('schema', {})))}</code></td></tr>"
                               for p in params)
                parts.append("<table><tr><th>parameter</th><th>in</th><th>required</th><th>type</th></tr>"
                             f"{rows}</table>")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                parts.append(f"<p>Body: <code>{html.escape(_type_of(schema, body))}</code>{_example(schema, body)}</p>")
            answers = "".join(f"<li><b>{html.escape(code)}</b> {html.escape(r.get('description', ''))}"
                              + _shape(schema, r) + "</li>" for code, r in op.get("responses", {}).items())
            parts.append(f"<ul>{answers}</ul>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>bspm serve API</title><style>"
            "body{font-family:sans-serif;margin:2em;max-width:60em}code{background:#f3f3f3}table{border-collapse:"
            "collapse}td,th{border:1px solid #ccc;padding:3px 8px}.m{color:#3367d6}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def _shape(schema: dict[str, Any], response: dict[str, Any]) -> str:
    """An answer's JSON shape and example, where the schema gives them."""
    node = response.get("content", {}).get("application/json", {}).get("schema")
    return f": <code>{html.escape(_type_of(schema, node))}</code>{_example(schema, node)}" if node else ""


def _example(schema: dict[str, Any], node: dict[str, Any]) -> str:
    """The examples a schema node (or the definition it points to) declares, each on a line."""
    examples = _component(schema, node).get("examples", [])
    return "".join(f"<br>for example <code>{html.escape(json.dumps(e))}</code>" for e in examples)


def _component(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """The definition a ``$ref`` node points to (the node itself otherwise)."""
    if "$ref" not in node:
        return node
    return schema.get("components", {}).get("schemas", {}).get(node["$ref"].rsplit("/", 1)[-1], {})


def _type_of(schema: dict[str, Any], node: dict[str, Any]) -> str:
    """A schema node in a compact notation: ``{"user": string | integer, "items": [{"item": ..., ...}, ...]}``;
    ``?`` marks a field that may be left out."""
    node = _component(schema, node)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        text = " | ".join(_type_of(schema, o) for o in options) + (" | null" if len(options) < len(node["anyOf"])
                                                                  else "")
    elif node.get("type") == "array":
        text = f"[{_type_of(schema, node.get('items', {}))}, ...]"
    elif node.get("properties"):
        needed = set(node.get("required", []))
        text = "{" + ", ".join(f"{json.dumps(name)}{'' if name in needed else '?'}: {_type_of(schema, field)}"
                               for name, field in node["properties"].items()) + "}"
    elif isinstance(node.get("additionalProperties"), dict):
        text = "{string: " + _type_of(schema, node["additionalProperties"]) + "}"
    else:
        text = node.get("type", "any")
    if "minimum" in node:
        text += f" >= {node['minimum']:g}"
    if "default" in node and node["default"] is not None:
        text += f", default {json.dumps(node['default'])}"
    return text
