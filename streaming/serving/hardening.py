"""What stands between a hostile or broken client and the serving API's routes.

* :func:`loads_strict` parses request bodies as strict JSON: ``NaN``, ``Infinity``, numbers that overflow a
  float and strings holding a lone UTF-16 surrogate (``"\\udfff"``) are refused, so nothing downstream — the
  model, Redis, the response encoder — ever sees a value it cannot handle. orjson parses the body first (it
  refuses all of those itself); a body it refuses, or one with an integer orjson would turn into a float, is
  parsed again by the standard library, which names the problem and where it is.
* :class:`StrictJSONRoute` makes every route parse its body that way; a refused body is a 422.
* :class:`BodyLimit` refuses a request body over ``LIVELEARN_API_MAX_BODY_BYTES`` with 413 before anything
  parses it: a declared ``Content-Length`` over the limit is refused unread, a chunked body is counted as
  it arrives.
* :func:`install_error_handlers` answers every error with a JSON body: 422 lists at most
  :data:`MAX_ERRORS` problems as ``loc``/``msg``/``type`` and never echoes the input back (no ``input``, no
  ``ctx``), Redis being unreachable, hung or refusing is a 503, and an unexpected error is a 500 with a
  JSON body instead of a traceback in plain text.

>>> loads_strict(b'{"x": [1, 2.5, "a"]}')
{'x': [1, 2.5, 'a']}
>>> loads_strict(b'{"x": NaN}')
Traceback (most recent call last):
...
streaming.serving.hardening.BodyError: NaN is not JSON; send a finite number (at ['body', 'x'])
>>> loads_strict(b'{"event_id": "\\\\udfff"}')
Traceback (most recent call last):
...
streaming.serving.hardening.BodyError: lone UTF-16 surrogate in a string: send valid Unicode (at ['body', 'event_id'])
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

import orjson
import redis
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streaming.events import encodable

__all__ = [
    "MAX_ERRORS",
    "BodyError",
    "BodyLimit",
    "StrictJSONRoute",
    "clean_errors",
    "install_error_handlers",
    "is_clean",
    "loads_clean",
    "loads_strict",
    "replay_receive",
]

log = logging.getLogger(__name__)

MAX_ERRORS = 20  # validation problems listed in one 422; the rest are counted
_MAX_PART = 64  # characters of one loc part (a feature name can be long) kept in an error
_MAX_MSG = 300


class BodyError(ValueError):
    """A request body that is not strict JSON; ``loc`` points at the problem (``["body", key or position...]``)."""

    def __init__(self, msg: str, loc: Sequence[str | int]) -> None:
        super().__init__(f"{msg} (at {list(loc)})")
        self.msg = msg
        self.loc = list(loc)

    def error(self) -> dict[str, Any]:
        """The problem as one entry of a 422 body."""
        return {"type": "json_invalid", "loc": self.loc, "msg": self.msg}


class _Refused:
    """Stands in for a number the parser refused, so the check that follows can name where it was."""

    def __init__(self, msg: str) -> None:
        self.msg = msg


def _constant(literal: str) -> _Refused:
    return _Refused(f"{literal} is not JSON; send a finite number")


def _finite_float(literal: str) -> float | _Refused:
    value = float(literal)
    if math.isfinite(value):
        return value
    return _Refused("number out of range of a 64-bit float; send a smaller number")


def _problem(key: str | int, value: Any) -> str | None:
    if isinstance(key, str) and not encodable(key):
        return "lone UTF-16 surrogate in a name: send valid Unicode"
    if isinstance(value, str) and not encodable(value):
        return "lone UTF-16 surrogate in a string: send valid Unicode"
    if isinstance(value, _Refused):
        return value.msg
    return None


def _first_problem(doc: Any) -> BodyError | None:
    """The first refused number or string that is not valid Unicode, depth first without recursion."""
    path: list[str | int] = []
    stack: list[Iterator[tuple[str | int, Any]]] = [iter([("body", doc)])]
    while stack:
        step = next(stack[-1], None)
        if step is None:
            stack.pop()
            if path:
                path.pop()
            continue
        key, value = step
        problem = _problem(key, value)
        if problem is not None:
            return BodyError(problem, [*path, key])
        if isinstance(value, dict):
            path.append(key)
            stack.append(iter(value.items()))
        elif isinstance(value, list):
            path.append(key)
            stack.append(iter(enumerate(value)))
    return None


#: 19 digits in a row may be an integer beyond 64 bits, which orjson would read as a float: parse those slowly.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


def loads_strict(raw: bytes) -> Any:
    """Parse a request body as strict JSON or raise :class:`BodyError` saying what to fix.

    >>> loads_strict(b'{"n": 123456789012345678901234567890}')  # a big integer stays an integer
    {'n': 123456789012345678901234567890}
    """
    doc = loads_clean(raw)
    return _loads_checked(raw) if doc is _UNCLEAN else doc


_UNCLEAN = object()


def loads_clean(raw: bytes) -> Any:
    """The body parsed by orjson when it is clean strict JSON, else a sentinel (not ``None``: ``null`` is JSON)
    meaning: parse it with :func:`loads_strict`, which says what is wrong. Fast, and never raises.

    >>> loads_clean(b'{"x": 1.5}'), loads_clean(b'{"x": NaN}') is loads_clean(b'[')
    ({'x': 1.5}, True)
    """
    if _LONG_DIGITS.search(raw) is not None:
        return _UNCLEAN
    try:  # orjson refuses NaN, infinities, lone surrogates and invalid UTF-8: what it returns is clean
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _UNCLEAN


def is_clean(doc: Any) -> bool:
    """Whether ``doc`` came from :func:`loads_clean` parsing a body (not its sentinel)."""
    return doc is not _UNCLEAN


def _loads_checked(raw: bytes) -> Any:
    """The standard library's parser with every refused value located: :func:`loads_strict`'s slow path."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(
            f"body is not UTF-8 (invalid byte at {exc.start}); send UTF-8 JSON", ["body", exc.start]
        ) from None
    try:
        doc = json.loads(text, parse_constant=_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise BodyError(f"JSON decode error: {exc.msg}", ["body", exc.pos]) from None
    except RecursionError:
        raise BodyError("JSON decode error: nested too deeply", ["body"]) from None
    except ValueError:  # an integer literal past Python's digit limit
        raise BodyError("JSON decode error: integer with too many digits", ["body"]) from None
    problem = _first_problem(doc)
    if problem is not None:
        raise problem
    return doc


class _StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_strict_json"):
            self._strict_json = loads_strict(await self.body())
        return self._strict_json


class StrictJSONRoute(APIRoute):
    """A route whose body is parsed by :func:`loads_strict`: a refused body is a 422, never a 400 or 500."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def strict_handler(request: Request) -> Response:
            request = _StrictJSONRequest(request.scope, request.receive)
            if await request.body():
                try:
                    await request.json()
                except BodyError as exc:
                    raise RequestValidationError([exc.error()]) from None
            return await handler(request)

        return strict_handler


class BodyLimit:
    """Pure ASGI middleware: a request body over ``max_bytes`` is a 413 before the app or a parser sees it.

    The body is read here (at most ``max_bytes`` of it) and handed on whole, so no route ever parses more
    than the limit, and the 413 goes out as soon as the limit is passed; the connection is then closed
    rather than drained.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client went away
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, replay_receive(messages, receive), send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "detail": f"request body over {self.max_bytes} bytes (LIVELEARN_API_MAX_BODY_BYTES); "
                "send a smaller body, e.g. fewer instances per request"
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _declared_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def replay_receive(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that hands out ``messages`` first, then waits on the real one (for a disconnect)."""
    pending = list(reversed(messages))

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay


def _safe_text(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters and made encodable, so an error body is always valid UTF-8."""
    cut = value if len(value) <= limit else value[:limit] + "…"
    return cut.encode("utf-8", "backslashreplace").decode("utf-8")


def clean_errors(errors: Sequence[dict[str, Any]], limit: int = MAX_ERRORS) -> list[dict[str, Any]]:
    """Validation errors as ``loc``/``msg``/``type`` only (no ``input``, no ``ctx``), at most ``limit`` of them.

    >>> errors = [{"type": "t", "loc": ("body", "x" * 100), "msg": "bad", "input": "secret"}] * 3
    >>> for error in clean_errors(errors, limit=2):
    ...     print(error)
    {'loc': ['body', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…'], 'msg': 'bad', 'type': 't'}
    {'loc': ['body', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…'], 'msg': 'bad', 'type': 't'}
    {'loc': ['body'], 'msg': '1 more problem not listed; fix the ones above and retry', 'type': 'too_many_errors'}
    """
    cleaned = [
        {
            "loc": [part if isinstance(part, int) else _safe_text(str(part), _MAX_PART) for part in e["loc"]],
            "msg": _safe_text(str(e["msg"]), _MAX_MSG),
            "type": str(e["type"]),
        }
        for e in errors[:limit]
    ]
    if len(errors) > limit:
        more = len(errors) - limit
        cleaned.append(
            {
                "loc": ["body"],
                "msg": f"{more} more problem{'s' if more > 1 else ''} not listed; fix the ones above and retry",
                "type": "too_many_errors",
            }
        )
    return cleaned


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": clean_errors(exc.errors())}, status_code=422)


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: Redis unavailable: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return JSONResponse(
        {
            "detail": f"the version store (Redis) is unavailable ({type(exc).__name__}); predictions "
            "with the serving version still work; retry later"
        },
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def _internal_error(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": f"internal error ({type(exc).__name__}); the server log has the details"}, status_code=500
    )


def install_error_handlers(app: FastAPI) -> None:
    """422 without the input, 503 for Redis trouble, and JSON for unexpected errors (which are still logged
    with their traceback)."""
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(redis.RedisError, _store_unavailable)
    app.add_exception_handler(Exception, _internal_error)
