"""The agent's local API: HTTP + JSON on 127.0.0.1, a random port and a random token.

The Excel side (UDFs, ribbon macros) and the CLI talk to the one running agent through it.
Every request needs ``Authorization: Bearer <token>`` and a loopback ``Host`` header (so a
web page in the user's browser can't reach it by DNS rebinding). The token and port are in
a per-user discovery file only that user can read (``paths.agents_dir()``).

Any local process can connect, token or not, so the server is hardened against hostile
clients: a deep listen queue (a burst of UDF recalculations is answered, not dropped), an
idle timeout on every connection, a cap on live connections (at the cap the connection that
has waited longest for its request is dropped to make room, so half-open sockets cannot
starve real callers), strict ``Content-Length`` parsing, and clients that hang up early are
a debug line, never a traceback.

``ApiServer`` is that machinery on its own, for another server: the team API
(``team/api.py``) serves HTTPS through it, each user with a token of their own.
"""

from __future__ import annotations

import hmac
import http.client
import json
import logging
import math
import os
import re
import secrets
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from pz_excel import paths
from pz_excel.agent.apiworkers import Workers
from pz_excel.agent.discovery import (
    AgentInfo,
    AgentUnavailable,
    agent_for_workbook,
    choose_agent,
    running_agents,
)
from pz_excel.i18n import Text, UserError

#: ``(query parameters, JSON body) -> reply``; an ``ApiServer``'s get the caller third.
Handler = Callable[..., dict[str, Any]]
#: The request's headers -> the caller (whatever the handlers need), or ``ApiError``.
Authorise = Callable[[Any], Any]
MAX_BODY = 64 * 1024
LISTEN_QUEUE = 1024  # a recalculation fires hundreds of UDF calls at once
MAX_CONNECTIONS = 256  # open connections (a worker thread each); beyond: oldest idle dropped
IDLE_TIMEOUT = 5.0  # seconds a connection may stay silent (per read or write)

log = logging.getLogger("pz_excel.agent.api")

# The client went away or stalled: its problem, not the agent's, so never a traceback.
_HANGUPS = (ConnectionError, TimeoutError)
_DIGITS = re.compile(r"[0-9]{1,18}")
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")


class ApiError(Exception):
    """A request the handler refuses; becomes a JSON error with this HTTP status."""

    def __init__(self, status: int, text: Text, extra: Mapping[str, Any] | None = None):
        super().__init__(text.en)
        self.status = status
        self.text = text
        self.extra = dict(extra or {})  # more fields of the error reply (a leader's address)


def bearer(headers: Any) -> str:
    """The token of the ``Authorization: Bearer`` header, "" if none. RFC 7235: the scheme
    is case-insensitive ("bearer", "BEARER" are fine)."""
    scheme, _, given = (headers.get("Authorization") or "").strip().partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def local_error_body(text: Text) -> dict[str, Any]:
    """The local API's error reply: the current language and both, flat."""
    return {"ok": False, "error": str(text), "error_en": text.en, "error_ru": text.ru}


def _bad_param(name: str, kind_en: str, kind_ru: str, lo: object, hi: object) -> ApiError:
    if lo is not None and hi is not None:
        en, ru = f" from {lo} to {hi}", f" от {lo} до {hi}"
    elif lo is not None:
        en, ru = f" of at least {lo}", f" не меньше {lo}"
    elif hi is not None:
        en, ru = f" of at most {hi}", f" не больше {hi}"
    else:
        en = ru = ""
    return ApiError(
        400,
        Text(
            f"parameter '{name}' must be {kind_en}{en}",
            f"параметр «{name}» должен быть {kind_ru}{ru}",
        ),
    )


def int_param(
    params: Mapping[str, str],
    name: str,
    default: int | None = None,
    lo: int | None = None,
    hi: int | None = None,
) -> int | None:
    """``params[name]`` as an int in ``[lo, hi]``; ``default`` when absent or blank.

    Anything else (not a whole number, out of range) is the caller's mistake: ``ApiError``
    400 with a bilingual message, never a 500.
    """
    raw = (params.get(name) or "").strip()
    if not raw:
        return default
    if not _INTEGER.fullmatch(raw):
        raise _bad_param(name, "a whole number", "целым числом", lo, hi)
    value = int(raw)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _bad_param(name, "a whole number", "целым числом", lo, hi)
    return value


def float_param(
    params: Mapping[str, str],
    name: str,
    default: float | None = None,
    lo: float | None = None,
    hi: float | None = None,
) -> float | None:
    """``params[name]`` as a finite float in ``[lo, hi]``; ``default`` when absent or blank.

    ``nan``, ``inf``, non-numbers and out-of-range values are ``ApiError`` 400.
    """
    raw = (params.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw) if len(raw) <= 64 else math.nan
    except ValueError:
        value = math.nan
    if (
        not math.isfinite(value)
        or (lo is not None and value < lo)
        or (hi is not None and value > hi)
    ):
        raise _bad_param(name, "a number", "числом", lo, hi)
    return value


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # a reply is two small writes: don't wait for an ACK
    timeout = IDLE_TIMEOUT  # replaced per server in setup()

    def log_message(self, format: str, *args: object) -> None:
        return  # the agent logs what matters; access lines would be noise

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout  # a silent client is dropped, not kept
        super().setup()

    def handle(self) -> None:
        try:
            super().handle()
        except _HANGUPS as exc:  # hung up, reset, or went silent mid-request
            self.close_connection = True
            log.debug("API client %s went away: %r", self.client_address, exc)

    def handle_one_request(self) -> None:
        self.server.note_idle(self.request)  # waiting for a request: may be dropped for room
        super().handle_one_request()

    def parse_request(self) -> bool:
        ok = super().parse_request()
        if ok:  # the whole request head is in: from here on it is served, not dropped
            self.server.note_busy(self.request)
        return ok

    def _reply(self, status: int, payload: Mapping[str, Any], *, close: bool = False) -> None:
        body = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, text: Text, *, close: bool = False,
               extra: Mapping[str, Any] | None = None) -> None:
        self._reply(status, {**self.server.error_body(text), **(extra or {})}, close=close)

    def _body_length(self) -> int | None:
        """The declared body length, or None after refusing a bad one (connection closed)."""
        if self.headers.get("Transfer-Encoding"):
            self._error(
                411,
                Text(
                    "send the body with Content-Length, not Transfer-Encoding",
                    "передайте тело с Content-Length, а не Transfer-Encoding",
                ),
                close=True,
            )
            return None
        values = {v.strip() for v in self.headers.get_all("Content-Length") or []}
        if not values:
            return 0
        if len(values) > 1 or not _DIGITS.fullmatch(next(iter(values))):
            self._error(
                400,
                Text("bad Content-Length header", "неверный заголовок Content-Length"),
                close=True,
            )
            return None
        length = int(next(iter(values)))
        if length > getattr(self.server, "max_body", MAX_BODY):
            self._error(413, Text("request too large", "слишком большой запрос"), close=True)
            return None
        return length

    def _dispatch(self, method: str) -> None:
        try:
            caller = self.server.authorise(self.headers)
        except ApiError as exc:
            self._error(exc.status, exc.text, close=True, extra=exc.extra)
            return
        parts = urlsplit(self.path)
        handler = self.server.routes.get((method, parts.path))
        if handler is None:
            self._error(
                404,
                Text(
                    f"no such API call: {method} {parts.path}",
                    f"нет такого вызова API: {method} {parts.path}",
                ),
                close=True,
            )
            return
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        body: dict[str, Any] = {}
        length = self._body_length()
        if length is None:
            return
        if length:
            try:
                body = json.loads(self.rfile.read(length).decode("utf-8"))
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except ValueError:
                self._error(
                    400,
                    Text(
                        "request body is not a JSON object",
                        "тело запроса не является JSON-объектом",
                    ),
                    close=True,
                )
                return
        try:
            result = handler(params, body, caller) if self.server.with_caller else handler(
                params, body)
        except ApiError as exc:
            self._error(exc.status, exc.text, extra=exc.extra)
            return
        except UserError as exc:
            self._error(400, exc.text)
            return
        except (ValueError, TypeError, OverflowError) as exc:  # a parameter that doesn't parse
            self._error(400, Text(f"bad request: {exc}", f"неверный запрос: {exc}"))
            return
        except Exception as exc:  # noqa: BLE001 - one bad call must not kill the API
            self._error(500, Text(f"agent error: {exc}", f"ошибка агента: {exc}"))
            return
        self._reply(200, {"ok": True, **result})

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")


class _Server(HTTPServer):
    """A worker thread (from ``Workers``) per open connection; connections are bounded.

    Live connections are tracked in the order they started waiting for a request. At
    ``max_connections`` a new connection makes room by dropping the one that has waited
    longest without sending a complete request head (a half-open or stalled socket); if
    every connection is busy serving a request, the new one is closed at once. Dropped
    connections are only shut down here; their own thread closes them.
    """

    request_queue_size = LISTEN_QUEUE
    routes: dict[tuple[str, str], Handler]
    authorise: Authorise
    with_caller = False  # handlers take (params, body, caller)
    error_body: Callable[[Text], dict[str, Any]] = staticmethod(local_error_body)
    tls: ssl.SSLContext | None = None  # HTTPS; the handshake runs in a worker, never here

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[_RequestHandler],
        *,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
    ):
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._conn_lock = threading.Lock()
        self._live: dict[socket.socket, bool] = {}  # connection -> waiting for a request
        self._dropped: set[socket.socket] = set()  # shut down, their thread not yet done
        # Live plus dropped-but-not-yet-ended connections never exceed this: none waits.
        self._workers = Workers(limit=2 * max_connections + 1)
        super().__init__(address, handler)

    @property
    def connections(self) -> int:
        with self._conn_lock:
            return len(self._live) + len(self._dropped)

    def _drop(self, conn: socket.socket) -> None:
        """Shut ``conn`` down (its blocked read returns at once). Call with the lock held."""
        del self._live[conn]
        self._dropped.add(conn)
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def note_idle(self, conn: socket.socket) -> None:
        with self._conn_lock:
            if conn in self._live:
                del self._live[conn]  # re-inserted last: the newest idle connection
                self._live[conn] = True

    def note_busy(self, conn: socket.socket) -> None:
        with self._conn_lock:
            if conn in self._live:
                self._live[conn] = False

    def get_request(self) -> tuple[Any, Any]:
        conn, address = super().get_request()
        if self.tls is not None:  # no handshake yet: a silent client must not stall accept
            conn = self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, address

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            if len(self._live) >= self.max_connections:
                oldest_idle = next((c for c, idle in self._live.items() if idle), None)
                if oldest_idle is not None:
                    self._drop(oldest_idle)
            admitted = (
                len(self._live) < self.max_connections
                and len(self._dropped) <= self.max_connections
            )
            if admitted:
                self._live[request] = True
        if not admitted:
            log.debug("API connection from %s refused: all slots busy", client_address)
            self.shutdown_request(request)
            return
        try:
            self._workers.submit(self._serve, request, client_address)
        except BaseException:
            self._release(request)
            raise

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            if self.tls is not None:
                request.settimeout(self.idle_timeout)
                request.do_handshake()  # a failed one is an OSError: handle_error's debug line
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - reported by handle_error, like socketserver does
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def _release(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._live.pop(conn, None)
            self._dropped.discard(conn)

    def shutdown_request(self, request: Any) -> None:
        self._release(request)  # before the close: _drop never touches a closed socket
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # the client hung up or the socket failed: not ours
            log.debug("API connection from %s ended: %r", client_address, exc)
            return
        log.error("API request from %s failed", client_address, exc_info=True)

    def server_close(self) -> None:
        with self._conn_lock:  # idle keep-alive and half-open clients: don't wait for them
            for conn in [c for c, idle in self._live.items() if idle]:
                self._drop(conn)
        super().server_close()
        self._workers.stop(timeout=self.idle_timeout + 1)  # requests being served finish


class ApiServer:
    """Serves ``routes`` on ``host:port`` in a thread of its own, with the hardening above;
    the machinery of ``LocalApi`` for other servers (the team API: HTTPS, a token per user).
    ``authorise(headers)`` returns the caller, handed to each handler as its third argument,
    or raises ``ApiError`` (the connection is then closed); ``tls``: serve HTTPS."""

    def __init__(
        self,
        routes: dict[tuple[str, str], Handler],
        authorise: Authorise,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        error_body: Callable[[Text], dict[str, Any]] = local_error_body,
        with_caller: bool = True,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
        max_body: int = MAX_BODY,
    ):
        self._server = _Server(
            (host, port), _RequestHandler, max_connections=max_connections,
            idle_timeout=idle_timeout)
        self._server.routes = routes
        self._server.authorise = authorise
        self._server.with_caller = with_caller
        self._server.error_body = error_body  # type: ignore[method-assign]
        self._server.tls = tls
        self._server.max_body = max_body
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def connections(self) -> int:
        """Client connections open right now (bounded by about twice ``max_connections``)."""
        return self._server.connections

    def serve(self) -> None:
        """Start answering (in a daemon thread)."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="pz-api", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class LocalApi(ApiServer):
    """Serves ``routes`` on loopback; writes the discovery file while it runs."""

    def __init__(
        self,
        routes: dict[tuple[str, str], Handler],
        host: str = "127.0.0.1",
        *,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
    ):
        super().__init__(routes, self._authorise, host=host, with_caller=False,
                         max_connections=max_connections, idle_timeout=idle_timeout)
        self.token = secrets.token_urlsafe(32)
        self.info: AgentInfo | None = None

    def _authorise(self, headers: Any) -> None:
        host = (headers.get("Host") or "").strip().lower()
        port = self.port
        if host not in {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}:
            raise ApiError(403, Text("only local requests are served",
                                     "принимаются только локальные запросы"))
        given = bearer(headers)
        if not given or not hmac.compare_digest(
            given.encode("utf-8", "replace"), self.token.encode()
        ):
            raise ApiError(401, Text("missing or wrong API token", "нет или неверный токен API"))

    def start(
        self, *, key: str, phone: str, workbook: str, server: str, journal: str, guid: str = ""
    ) -> None:
        self.serve()
        self.info = AgentInfo(
            pid=os.getpid(),
            port=self.port,
            token=self.token,
            phone=phone,
            workbook=str(workbook),
            server=server,
            journal=str(journal),
            started=time.time(),
            key=key,
            guid=guid or phone,
        )
        paths.write_private(self.info.file, json.dumps(asdict(self.info), ensure_ascii=False))

    def stop(self) -> None:
        if self.info is not None:
            try:
                current = json.loads(self.info.file.read_text(encoding="utf-8"))
                if current.get("pid") == os.getpid():  # never delete a successor's file
                    self.info.file.unlink()
            except (OSError, ValueError):
                pass
        super().stop()


class ApiClient:
    """Talks to one running agent. Timeouts are short: UDFs must never hang Excel."""

    def __init__(self, info: AgentInfo, timeout: float = 2.0):
        self.info = info
        self.timeout = timeout

    @classmethod
    def discover(
        cls, workbook: str | Path | None = None, phone: str | None = None, timeout: float = 2.0
    ) -> ApiClient:
        """The agent :func:`choose_agent` picks among the running ones."""
        return cls(choose_agent(running_agents(), workbook, phone), timeout)

    @classmethod
    def for_workbook(cls, workbook: str | Path, timeout: float = 2.0) -> ApiClient | None:
        """``workbook``'s own agent, or ``None`` (never another workbook's)."""
        info = agent_for_workbook(workbook)
        return None if info is None else cls(info, timeout)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", self.info.port, timeout=self.timeout)
        data = json.dumps(body or {}).encode("utf-8") if method == "POST" else None
        headers = {
            "Authorization": f"Bearer {self.info.token}",
            "Host": f"127.0.0.1:{self.info.port}",
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = json.loads(resp.read().decode("utf-8") or "{}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise AgentUnavailable(
                Text(
                    f"the pz-excel agent did not answer ({type(exc).__name__})",
                    f"агент pz-excel не ответил ({type(exc).__name__})",
                )
            ) from exc
        finally:
            conn.close()
        if not payload.get("ok"):
            raise UserError(
                Text(
                    payload.get("error_en") or "agent error",
                    payload.get("error_ru") or "ошибка агента",
                )
            )
        return payload

    def get(self, path: str, **params: object) -> dict:
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return self._request("GET", f"{path}?{query}" if query else path)

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict:
        return self._request("POST", path, body)
