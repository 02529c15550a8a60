"""The desktop agent's link to a team server (issue 15): the team API's paths and field
names (held here once; ``pz_excel/team/api.py`` serves them), and ``TeamLink``, the small
HTTPS JSON client a desktop agent uses to report its events, ask the team's last call
with a client and check its token.
"""

from __future__ import annotations

import hmac
import http.client
import json
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from pz_excel.connector import tls as tlsutil
from pz_excel.connector.trust import TlsConfigError, TlsOptions
from pz_excel.i18n import Text, UserError

# ---------------------------------------------------------------------- the team API
# One place for the contract between the team server and the desktop agents.

API_PREFIX = "/api/v1"
PATH_WHOAMI = API_PREFIX + "/whoami"  # GET  -> {"extension","name","role"}
PATH_LAST_CALL = API_PREFIX + "/last-call"  # GET ?number=N -> {"call": {...} | null}
PATH_CALLS = API_PREFIX + "/calls"  # GET ?since=&until=&limit= -> {"calls": [...]}
PATH_DIAL = API_PREFIX + "/dial"  # POST {"number": N}
PATH_EVENTS = API_PREFIX + "/events"  # POST {"events": [{"type","callID","attrs"}]}
PATH_STATUS = API_PREFIX + "/status"  # GET  -> {"role": "leader"|"standby","connector"}

#: The team API's default listening port (``pz-excel team run --listen``).
DEFAULT_PORT = 10190

# Field names of the JSON bodies.
F_EXTENSION = "extension"
F_NAME = "name"
F_ROLE = "role"
F_NUMBER = "number"
F_CALL = "call"
F_CALLS = "calls"
F_EVENTS = "events"
F_TYPE = "type"
F_CALL_ID = "callID"
F_ATTRS = "attrs"
F_LEADER = "leader"  # a standby's 503: the leader's API address
F_ERROR = "error"  # {"error": {"en": ..., "ru": ...}}
F_CONNECTOR = "connector"

ROLE_LEADER = "leader"
ROLE_STANDBY = "standby"

#: At most this many events in one ``POST /events`` (a larger body is refused: 400).
MAX_EVENTS_PER_POST = 500
#: The largest request body the team API takes: 500 events with long attributes fit.
MAX_POST_BYTES = 4 * 1024 * 1024

# ---------------------------------------------------------------------- the client

#: Seconds a request may take: the team server is on the office network.
TIMEOUT = 5.0

# What went wrong, for callers that act on it (TeamError.kind).
UNREACHABLE = "unreachable"
PIN_MISMATCH = "pin"
TOKEN_REFUSED = "token"
FORBIDDEN = "forbidden"
STANDBY = "standby"
REFUSED = "refused"  # any other 4xx/5xx: the server's own words

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class TeamError(UserError):
    """A team server request failed; ``kind`` says how (one of the constants above),
    ``status`` is the HTTP status when there was an answer."""

    def __init__(self, kind: str, text: Text, status: int | None = None):
        super().__init__(text)
        self.kind = kind
        self.status = status


def team_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a team server address; ``host:port`` is taken as https.
    Plain http only to this computer: the bearer token must not cross a network bare."""
    text = (url or "").strip().rstrip("/")
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        parts, port = None, None
    host = (parts.hostname or "") if parts is not None else ""
    scheme = parts.scheme if parts is not None else ""
    if not host or scheme not in ("https", "http") or (parts and parts.path not in ("", "/")):
        raise UserError(Text(
            f"bad team server address {url!r}: give https://HOST:PORT",
            f"неверный адрес командного сервера {url!r}: укажите https://ХОСТ:ПОРТ",
        ))
    if scheme == "http" and host not in _LOOPBACK:
        raise UserError(Text(
            f"the team server {url} must be https:// (the token would cross the network "
            "in clear text)",
            f"командный сервер {url} должен быть https:// (иначе токен пойдёт по сети "
            "открытым текстом)",
        ))
    return scheme, host, port or DEFAULT_PORT


def _server_text(payload: Any, status: int) -> Text:
    """The team server's own error words ({"error": {"en","ru"}}), or the status."""
    err = payload.get(F_ERROR) if isinstance(payload, dict) else None
    if isinstance(err, dict) and (err.get("en") or err.get("ru")):
        return Text(str(err.get("en") or err.get("ru")), str(err.get("ru") or err.get("en")))
    return Text(f"HTTP {status}", f"HTTP {status}")


class TeamLink:
    """HTTPS + JSON to one team server, on one keep-alive connection (one request at a
    time; a second thread wants its own: :meth:`copy`). A self-signed team server is
    trusted by its pinned SHA-256 fingerprint only, checked before the token is sent."""

    def __init__(self, url: str, token: str, pin_sha256: str = "", ca_file: str | None = None,
                 *, timeout: float = TIMEOUT):
        # Several addresses, comma-separated (the two team servers of an office): the
        # first that answers is used; one that cannot be reached hands over to the next.
        addresses = [a.strip().rstrip("/") for a in (url or "").split(",") if a.strip()]
        addresses = [a if "://" in a else "https://" + a for a in addresses] or [""]
        self.url = ",".join(addresses)
        self._targets = [team_url(a) for a in addresses]
        self._target = self._targets[0]
        self._sent = False  # the current exchange's request went out (a dial is not resent)
        self.token = (token or "").strip()
        try:
            self.tls = TlsOptions(pin_sha256=pin_sha256 or None, ca_file=ca_file)
        except TlsConfigError as exc:
            raise UserError(exc.text) from None
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._used = False  # the connection served a request: the server may have closed it
        self._lock = threading.Lock()

    def copy(self) -> TeamLink:
        """The same server and credentials on a connection of its own."""
        return TeamLink(self.url, self.token, self.tls.pin_sha256 or "", self.tls.ca_file,
                        timeout=self.timeout)

    @property
    def where(self) -> str:
        scheme, host, port = self._target
        return f"{scheme}://{host}:{port}"

    # ------------------------------------------------------------------ the API

    def whoami(self) -> dict[str, Any]:
        return self.request("GET", PATH_WHOAMI)

    def status(self) -> dict[str, Any]:
        return self.request("GET", PATH_STATUS)

    def last_call(self, number: str, timeout: float | None = None) -> dict[str, Any] | None:
        """The team's latest call with this client (any manager's), or None."""
        answer = self.request("GET", PATH_LAST_CALL, params={F_NUMBER: number}, timeout=timeout)
        call = answer.get(F_CALL)
        return call if isinstance(call, dict) else None

    def calls(self, since: str | None = None, until: str | None = None,
              limit: int | None = None) -> list[dict[str, Any]]:
        """Calls of the token's own extension."""
        answer = self.request("GET", PATH_CALLS,
                              params={"since": since, "until": until, "limit": limit})
        return list(answer.get(F_CALLS) or [])

    def dial(self, number: str) -> dict[str, Any]:
        """The team server's leader dials ``number`` from the token's extension."""
        return self.request("POST", PATH_DIAL, {F_NUMBER: number}, retry=False)

    def report(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Our extension's events ({"type","callID","attrs"}), merged per call ID there:
        sending one twice does no harm, so a lost connection is simply retried."""
        return self.request("POST", PATH_EVENTS, {F_EVENTS: events})

    def close(self) -> None:
        with self._lock:
            self._drop()

    # ------------------------------------------------------------------ HTTP

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *,
                params: dict[str, Any] | None = None, timeout: float | None = None,
                retry: bool = True) -> dict[str, Any]:
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
        target = f"{path}?{query}" if query else path
        data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
        with self._lock:
            status, payload = self._exchange_any(method, target, data, timeout, retry)
            if status == 503 and isinstance(payload, dict) and payload.get(F_LEADER):
                # A standby names the leader: ask it once, and keep asking it from now on.
                leader = str(payload[F_LEADER])
                self._drop()
                self._target = team_url(leader)
                status, payload = self._exchange(method, target, data, timeout, retry)
        if status == 200:
            return payload if isinstance(payload, dict) else {}
        raise self._refused(status, payload)

    def _exchange_any(self, method: str, target: str, data: bytes | None,
                      timeout: float | None, retry: bool) -> tuple[int, Any]:
        """``_exchange`` with the current address, then the others while one cannot be
        reached — a request that may have gone out is retried only if it may be repeated
        (everything but a dial: reports merge per call ID, reads change nothing)."""
        tried = 0
        while True:
            try:
                return self._exchange(method, target, data, timeout, retry)
            except TeamError as exc:
                tried += 1
                if (exc.kind != UNREACHABLE or tried >= len(self._targets)
                        or (self._sent and not retry)):
                    raise
                i = self._targets.index(self._target) if self._target in self._targets else -1
                self._target = self._targets[(i + 1) % len(self._targets)]

    def _exchange(self, method: str, target: str, data: bytes | None, timeout: float | None,
                  retry: bool) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        for attempt in (1, 2):
            reused = self._used
            try:
                self._sent = False
                conn = self._connection(timeout)
                self._sent = True
                conn.request(method, target, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                self._used = True
                if resp.will_close:
                    self._drop()
            except TeamError:
                self._drop()
                raise
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                # A kept-alive connection the server closed meanwhile: once more, anew.
                if attempt == 1 and reused and retry and not isinstance(exc, TimeoutError):
                    continue
                raise self._unreachable(exc) from exc
            try:
                payload = json.loads(raw.decode("utf-8") or "{}")
            except ValueError:
                payload = None
            return resp.status, payload
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        wait = self.timeout if timeout is None else timeout
        if self._conn is None:
            scheme, host, port = self._target
            if scheme == "http":
                conn = http.client.HTTPConnection(host, port, timeout=wait)
                conn.connect()
            else:
                try:
                    ctx = self.tls.ssl_context()
                except (OSError, ssl.SSLError, ValueError) as exc:
                    raise TeamError(UNREACHABLE, Text(
                        f"team server TLS settings unusable: {exc}",
                        f"настройки TLS командного сервера не годятся: {exc}")) from exc
                conn = http.client.HTTPSConnection(host, port, timeout=wait, context=ctx)
                conn.connect()
                self._conn = conn
                self._check_pin(conn)
            self._conn, self._used = conn, False
        if self._conn.sock is not None:
            self._conn.sock.settimeout(wait)
        self._conn.timeout = wait
        return self._conn

    def _check_pin(self, conn: http.client.HTTPConnection) -> None:
        """Before the token goes out: the certificate must be the pinned one."""
        pin = self.tls.pin_sha256
        if not pin:
            return
        sock = conn.sock
        der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        got = tlsutil.fingerprint_sha256(der) if der else "none"
        if not hmac.compare_digest(got, pin):
            raise TeamError(PIN_MISMATCH, Text(
                f"the team server {self.where} shows a certificate with SHA-256 fingerprint "
                f"{got}, not the pinned {pin}: the token was not sent. If the server's "
                "certificate was renewed, pin the new fingerprint (--team-pin)",
                f"командный сервер {self.where} предъявил сертификат с отпечатком SHA-256 "
                f"{got}, а закреплён {pin}: токен не отправлен. Если сертификат сервера "
                "сменили, закрепите новый отпечаток (--team-pin)",
            ))

    def _drop(self) -> None:
        conn, self._conn, self._used = self._conn, None, False
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def _unreachable(self, exc: BaseException) -> TeamError:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return TeamError(UNREACHABLE, Text(
                f"the team server {self.where} has a certificate this computer does not "
                f"trust ({exc.verify_message}); pin its fingerprint (--team-pin)",
                f"сертификату командного сервера {self.where} этот компьютер не доверяет "
                f"({exc.verify_message}); закрепите его отпечаток (--team-pin)",
            ))
        what = "timed out" if isinstance(exc, (TimeoutError, socket.timeout)) else str(exc)
        what_ru = "нет ответа" if isinstance(exc, (TimeoutError, socket.timeout)) else str(exc)
        return TeamError(UNREACHABLE, Text(
            f"the team server {self.where} cannot be reached: {what or type(exc).__name__}",
            f"командный сервер {self.where} недоступен: {what_ru or type(exc).__name__}",
        ))

    def _refused(self, status: int, payload: Any) -> TeamError:
        said = _server_text(payload, status)
        if status == 401:
            return TeamError(TOKEN_REFUSED, Text(
                f"the team server {self.where} refused the token (401: {said.en}); ask its "
                "admin for a new one (pz-excel team user add EXTENSION)",
                f"командный сервер {self.where} не принял токен (401: {said.ru}); попросите "
                "у администратора новый (pz-excel team user add ДОБАВОЧНЫЙ)",
            ), status)
        if status == 403:
            return TeamError(FORBIDDEN, Text(
                f"the team server {self.where} does not allow this (403): {said.en}",
                f"командный сервер {self.where} этого не разрешает (403): {said.ru}",
            ), status)
        if status == 503:
            return TeamError(STANDBY, Text(
                f"the team server {self.where} is a standby and names no leader (503): "
                f"{said.en}",
                f"командный сервер {self.where} в резерве и не называет ведущего (503): "
                f"{said.ru}",
            ), status)
        return TeamError(REFUSED, Text(
            f"the team server {self.where} answered {status}: {said.en}",
            f"командный сервер {self.where} ответил {status}: {said.ru}",
        ), status)


class LastCallCache:
    """``last_call`` for the worksheet function PZ_TEAM_LAST, which Excel calls for every
    cell on every recalculation and gives 0.2 s: answers are kept ``ttl`` seconds, and a
    team server that failed is not asked again for ``fail_ttl`` seconds (one slow answer,
    not one per cell)."""

    def __init__(self, link: TeamLink, *, timeout: float = 0.15, ttl: float = 5.0,
                 fail_ttl: float = 5.0, clock: Any = None):
        self.link = link
        self.timeout = timeout
        self.ttl = ttl
        self.fail_ttl = fail_ttl
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._asking = threading.Lock()
        self._answers: dict[str, tuple[dict[str, Any] | None, float]] = {}
        self._down: tuple[TeamError, float] | None = None

    def get(self, number: str) -> dict[str, Any] | None:
        found = self._known(number)
        if found is not None:
            return found[0]
        with self._asking:  # one question at a time; who waited looks at the memory again
            found = self._known(number)
            if found is not None:
                return found[0]
            try:
                call = self.link.last_call(number, timeout=self.timeout)
            except TeamError as exc:
                if exc.kind in (UNREACHABLE, STANDBY, PIN_MISMATCH, TOKEN_REFUSED):
                    with self._lock:
                        self._down = (exc, self._clock() + self.fail_ttl)
                raise
        with self._lock:
            self._down = None
            if len(self._answers) > 5000:  # a sheet of many numbers: start afresh
                self._answers.clear()
            self._answers[number] = (call, self._clock() + self.ttl)
        return call

    def _known(self, number: str) -> tuple[dict[str, Any] | None] | None:
        """(the remembered answer,) or None; a remembered failure is raised again."""
        now = self._clock()
        with self._lock:
            if self._down is not None and now < self._down[1]:
                raise self._down[0]
            cached = self._answers.get(number)
            if cached is not None and now < cached[1]:
                return (cached[0],)
        return None
