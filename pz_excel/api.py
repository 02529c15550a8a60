"""The agent's local API: HTTP + JSON on 127.0.0.1, a random port and a random token.

The Excel side (UDFs, ribbon macros) and the CLI talk to the one running agent through it.
Every request needs ``Authorization: Bearer <token>`` and a loopback ``Host`` header (so a
web page in the user's browser can't reach it by DNS rebinding). The token and port are in
a per-user discovery file only that user can read (``paths.agents_dir()``).
"""

from __future__ import annotations

import hmac
import http.client
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import psutil

from . import paths
from .i18n import Text, UserError

Handler = Callable[[dict[str, str], dict[str, Any]], dict[str, Any]]
MAX_BODY = 64 * 1024


class ApiError(Exception):
    """A request the handler refuses; becomes a JSON error with this HTTP status."""

    def __init__(self, status: int, text: Text):
        super().__init__(text.en)
        self.status = status
        self.text = text


class AgentUnavailable(UserError):
    """No running agent answers (not started, stopped, or too slow)."""


@dataclass(frozen=True)
class AgentInfo:
    """The discovery file's content."""

    pid: int
    port: int
    token: str
    phone: str
    workbook: str
    server: str
    journal: str
    started: float
    key: str

    @property
    def file(self) -> Path:
        return paths.agents_dir() / f"{self.key}.json"

    def alive(self) -> bool:
        try:
            return psutil.pid_exists(self.pid) and psutil.Process(self.pid).status() != "zombie"
        except psutil.Error:
            return False


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return  # the agent logs what matters; access lines would be noise

    def _reply(self, status: int, payload: Mapping[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, text: Text) -> None:
        self._reply(
            status, {"ok": False, "error": str(text), "error_en": text.en, "error_ru": text.ru}
        )

    def _authorised(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        port = self.server.server_address[1]
        if host not in {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}:
            self._error(
                403, Text("only local requests are served", "принимаются только локальные запросы")
            )
            return False
        auth = self.headers.get("Authorization") or ""
        given = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        if not given or not hmac.compare_digest(given.encode(), self.server.token.encode()):
            self._error(401, Text("missing or wrong API token", "нет или неверный токен API"))
            return False
        return True

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
            )
            return
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        body: dict[str, Any] = {}
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._error(413, Text("request too large", "слишком большой запрос"))
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
        except Exception as exc:  # noqa: BLE001 - one bad call must not kill the API
            self._error(500, Text(f"agent error: {exc}", f"ошибка агента: {exc}"))
            return
        self._reply(200, {"ok": True, **result})

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    token: str
    routes: dict[tuple[str, str], Handler]


class LocalApi:
    """Serves ``routes`` on loopback; writes the discovery file while it runs."""

    def __init__(self, routes: dict[tuple[str, str], Handler], host: str = "127.0.0.1"):
        self._server = _Server((host, 0), _RequestHandler)
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

    def start(self, *, key: str, phone: str, workbook: str, server: str, journal: str) -> None:
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


def running_agents() -> list[AgentInfo]:
    """Discovery files of agents whose process is alive (stale files are ignored)."""
    found = []
    for file in sorted(paths.agents_dir().glob("*.json")):
        try:
            info = AgentInfo(**json.loads(file.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue
        if info.alive():
            found.append(info)
    return found


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False


class ApiClient:
    """Talks to one running agent. Timeouts are short: UDFs must never hang Excel."""

    def __init__(self, info: AgentInfo, timeout: float = 2.0):
        self.info = info
        self.timeout = timeout

    @classmethod
    def discover(
        cls, workbook: str | Path | None = None, phone: str | None = None, timeout: float = 2.0
    ) -> ApiClient:
        agents = running_agents()
        if workbook is not None:
            agents = [a for a in agents if _same_file(a.workbook, str(workbook))] or agents
        if phone:
            agents = [a for a in agents if a.phone == phone]
        if not agents:
            raise AgentUnavailable(
                Text(
                    "no pz-excel agent is running "
                    "(start it: pz-excel run, or Connect on the ribbon)",
                    "агент pz-excel не запущен (запустите: pz-excel run или «Подключить» на ленте)",
                )
            )
        if len(agents) > 1 and workbook is None and not phone:
            agents.sort(key=lambda a: a.started, reverse=True)
        return cls(agents[0], timeout)

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
