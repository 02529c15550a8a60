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
"""

from __future__ import annotations

import hmac
import http.client
import json
import logging
import math
import os
import queue
import re
import secrets
import socket
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
from pz_excel.agent.discovery import (
    AgentInfo,
    AgentUnavailable,
    agent_for_workbook,
    choose_agent,
    running_agents,
)
from pz_excel.i18n import Text, UserError

Handler = Callable[[dict[str, str], dict[str, Any]], dict[str, Any]]
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

    def __init__(self, status: int, text: Text):
        super().__init__(text.en)
        self.status = status
        self.text = text


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

    def _error(self, status: int, text: Text, *, close: bool = False) -> None:
        self._reply(
            status,
            {"ok": False, "error": str(text), "error_en": text.en, "error_ru": text.ru},
            close=close,
        )

    def _authorised(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        port = self.server.server_address[1]
        if host not in {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}:
            self._error(
                403,
                Text("only local requests are served", "принимаются только локальные запросы"),
                close=True,
            )
            return False
        # RFC 7235: the auth scheme is case-insensitive ("bearer", "BEARER" are fine).
        scheme, _, given = (self.headers.get("Authorization") or "").strip().partition(" ")
        given = given.strip() if scheme.lower() == "bearer" else ""
        if not given or not hmac.compare_digest(
            given.encode("utf-8", "replace"), self.server.token.encode()
        ):
            self._error(
                401, Text("missing or wrong API token", "нет или неверный токен API"), close=True
            )
            return False
        return True

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
        if length > MAX_BODY:
            self._error(413, Text("request too large", "слишком большой запрос"), close=True)
            return None
        return length

    def _dispatch(self, method: str) -> None:
        if not self._authorised():
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
            result = handler(params, body)
        except ApiError as exc:
            self._error(exc.status, exc.text)
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


class _Workers:
    """Daemon threads that serve connections: started on demand, reused, bounded.

    Starting a thread costs about as much as serving a request (and more on a busy machine),
    so threads are reused, and they are started by a helper thread so that the accept loop
    never waits for one: a burst is served by whichever workers are free first. Idle
    workers end after ``linger`` seconds. Invariant, under the lock: workers waiting for a
    job + ``_wanted`` == ``_idle`` + jobs queued - ``_owed``.
    """

    def __init__(self, limit: int, linger: float = 30.0):
        self._limit = limit
        self._linger = linger
        self._jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Condition()
        self._idle = 0  # waiting workers no job is promised to
        self._wanted = 0  # workers asked of the starter, not started yet
        self._owed = 0  # jobs queued when no more workers may start: the next free one
        self._threads: set[threading.Thread] = set()
        self._starter: threading.Thread | None = None
        self._started = 0
        self._stopping = False

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
            elif len(self._threads) + self._wanted < self._limit and not self._stopping:
                if self._starter is None:
                    starter = threading.Thread(
                        target=self._start_workers, name="pz-api-starter", daemon=True
                    )
                    starter.start()  # may raise: then nothing was promised or queued
                    self._starter = starter
                self._wanted += 1
                self._lock.notify()
            else:
                self._owed += 1
            self._jobs.put((fn, args))

    def _start_workers(self) -> None:
        while True:
            with self._lock:
                while not self._wanted and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                self._wanted -= 1
                self._started += 1
                thread = threading.Thread(
                    target=self._run, name=f"pz-api-conn-{self._started}", daemon=True
                )
                self._threads.add(thread)
            try:
                thread.start()
            except RuntimeError as exc:  # out of threads: the job waits for a free worker
                log.warning("API: cannot start a worker thread (%s)", exc)
                with self._lock:
                    self._threads.discard(thread)
                    self._owed += 1

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            try:
                job = self._jobs.get(timeout=self._linger)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # a spare: no job is promised to it
                        self._idle -= 1
                        self._threads.discard(me)
                        return
                continue
            if job is None:  # stop
                with self._lock:
                    self._threads.discard(me)
                return
            fn, args = job
            try:
                fn(*args)
            except Exception:  # a worker outlives any one connection
                log.error("API worker failed", exc_info=True)
            with self._lock:
                if self._owed:
                    self._owed -= 1
                else:
                    self._idle += 1

    def stop(self, timeout: float) -> None:
        """Let queued and running jobs finish (up to ``timeout`` seconds), then end."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
            starter = self._starter
        if starter is not None:
            starter.join(timeout)
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)  # after every queued job
        for thread in threads:
            if thread is not threading.current_thread():  # a handler may stop the API
                thread.join(max(0.0, deadline - time.monotonic()))


class _Server(HTTPServer):
    """A worker thread (from ``_Workers``) per open connection; connections are bounded.

    Live connections are tracked in the order they started waiting for a request. At
    ``max_connections`` a new connection makes room by dropping the one that has waited
    longest without sending a complete request head (a half-open or stalled socket); if
    every connection is busy serving a request, the new one is closed at once. Dropped
    connections are only shut down here; their own thread closes them.
    """

    request_queue_size = LISTEN_QUEUE
    token: str
    routes: dict[tuple[str, str], Handler]

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
        self._workers = _Workers(limit=2 * max_connections + 1)
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


class LocalApi:
    """Serves ``routes`` on loopback; writes the discovery file while it runs."""

    def __init__(
        self,
        routes: dict[tuple[str, str], Handler],
        host: str = "127.0.0.1",
        *,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
    ):
        self._server = _Server(
            (host, 0), _RequestHandler, max_connections=max_connections, idle_timeout=idle_timeout
        )
        self._server.token = secrets.token_urlsafe(32)
        self._server.routes = routes
        self._thread: threading.Thread | None = None
        self.info: AgentInfo | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def token(self) -> str:
        return self._server.token

    @property
    def connections(self) -> int:
        """Client connections open right now (bounded by about twice ``max_connections``)."""
        return self._server.connections

    def start(
        self, *, key: str, phone: str, workbook: str, server: str, journal: str, guid: str = ""
    ) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="pz-api", daemon=True
        )
        self._thread.start()
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
        self._server.shutdown()
        self._server.server_close()


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
