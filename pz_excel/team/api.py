"""The team API (issue 15): HTTPS on the office network, a bearer token per user.

It runs on the leader and on a standby alike (both read the one team database). Paths and
field names are ``agent/teamlink.py``'s (the desktop agents' client holds them too). The
HTTP machinery is the local API's (``agent.api.ApiServer``: bounded workers, idle
timeouts, strict bodies), here with TLS and the users' tokens (``team/users.py``).

Who may do what — always by the token, never by what a body says:

* ``whoami``, ``last-call`` (the team's latest call with a client, any manager's),
  ``status``: any user;
* ``calls``: the caller's own extension's calls only;
* ``dial``: From is the caller's extension, whatever the body says; every attempt is
  audited (``team_audit``); a standby answers 503 naming the leader's API address;
* ``events``: a desktop agent reports its own extension's events (``from`` or ``to`` is
  its extension; another's is refused, 403 for that event), merged per call ID into the
  journal with the same ``Journal.apply_event`` and ``CallMapper`` the leader uses — so a
  call the leader lost (killed before it committed a frame the connector counts as
  delivered) is closed by the managers' own reports, and a report of a call the leader
  has changes nothing.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pz_excel.agent import sqldb
from pz_excel.agent import teamlink as tl
from pz_excel.agent.api import ApiError, ApiServer, bearer, int_param
from pz_excel.agent.calllog import CallMapper, is_new_call
from pz_excel.connector.client import ConnectorError
from pz_excel.crm import phones
from pz_excel.crm.schema import CallRow
from pz_excel.i18n import Text, UserError
from pz_excel.protocol.codec import Event, EventType
from pz_excel.team import export, tlscert
from pz_excel.team.users import User, Users

log = logging.getLogger("pz_excel.team.api")

#: ``GET calls``: rows per answer at most (and by default).
MAX_CALLS = 1000
DEFAULT_CALLS = 100


def error_body(text: Text) -> dict[str, Any]:
    """The team API's error reply: ``{"error": {"en": …, "ru": …}}``."""
    return {"ok": False, tl.F_ERROR: {"en": text.en, "ru": text.ru}}


def call_json(row: CallRow | None) -> dict[str, Any] | None:
    """A call row as JSON: internal keys and values, times as local ``YYYY-MM-DD HH:MM:SS``."""
    if row is None:
        return None
    return {key: (value.isoformat(sep=" ", timespec="seconds")
                  if isinstance(value, datetime) else value)
            for key, value in row.values().items()}


def reported_reuse(current: CallRow, event: Event) -> bool:
    """``is_new_call`` for a desktop agent's report: only a completed-call record (it
    carries its own start time) can start a new call under an old ID. A ringing event
    reported late — an agent that was offline for a day — is the same call, not a new one."""
    return event.type == EventType.HISTORY and is_new_call(current, event)


def _when(params: Mapping[str, str], name: str) -> datetime | None:
    raw = (params.get(name) or "").strip()
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, Text(
            f"parameter '{name}' must be a date or a date and time (YYYY-MM-DD[ HH:MM:SS])",
            f"параметр «{name}» должен быть датой или датой со временем "
            "(ГГГГ-ММ-ДД[ ЧЧ:ММ:СС])")) from None


def _event(item: object) -> Event | None:
    """One reported event, or None if it is not one (``{"type", "callID", "attrs"}``)."""
    if not isinstance(item, Mapping):
        return None
    etype, call_id, attrs = item.get(tl.F_TYPE), item.get(tl.F_CALL_ID), item.get(tl.F_ATTRS)
    if isinstance(etype, str) and etype.strip().isdigit():
        etype = int(etype)
    if (not isinstance(etype, int) or isinstance(etype, bool) or not isinstance(call_id, str)
            or not call_id or not isinstance(attrs, Mapping)):
        return None
    return Event(etype, call_id, {str(k): str(v) for k, v in attrs.items()})


class TeamApi:
    """See the module docstring. ``start()`` listens (``port`` 0: any free one), makes or
    reuses the certificate; ``url``, ``port``, ``fingerprint`` then say where and what to
    pin. ``role()``: "leader" or "standby" now; ``dial(extension, number)``: the leader's
    call (a standby never gets one); ``status()``: more fields for ``GET status``;
    ``area_code``: the team's (numbers are normalised as its journal's are)."""

    def __init__(
        self,
        journal: Any,
        *,
        users: Users,
        host: str = "127.0.0.1",
        port: int = tl.DEFAULT_PORT,
        certfile: str | Path | None = None,
        keyfile: str | Path | None = None,
        role: Callable[[], str] = lambda: tl.ROLE_LEADER,
        dial: Callable[[str, str], Any] | None = None,
        leader_address: Callable[[], str] = lambda: "",
        mapper: CallMapper | None = None,
        status: Callable[[], Mapping[str, Any]] | None = None,
        area_code: str = "",
        cert_folder: Path | None = None,
    ) -> None:
        self.journal = journal
        self.users = users
        self.host = host
        self._port = port
        self._certfile, self._keyfile, self._cert_folder = certfile, keyfile, cert_folder
        self.role = role
        self.dial = dial
        self.leader_address = leader_address
        self.mapper = mapper or CallMapper()
        self.status = status
        self.area_code = area_code
        self.cert: tlscert.TeamCert | None = None
        self._server: ApiServer | None = None
        # The journal's database, for the per-extension query (export.calls).
        self.db: sqldb.Db = journal.db

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        return self._server.port if self._server is not None else self._port

    @property
    def fingerprint(self) -> str:
        return self.cert.fingerprint if self.cert is not None else ""

    @property
    def url(self) -> str:
        host = self.host
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname()  # what the managers' machines reach it by
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.port}"

    def start(self) -> TeamApi:
        self.cert = tlscert.load(self._certfile, self._keyfile,
                                 hosts=tlscert.host_names(self.host), folder=self._cert_folder)
        routes = {
            ("GET", tl.PATH_WHOAMI): self.api_whoami,
            ("GET", tl.PATH_LAST_CALL): self.api_last_call,
            ("GET", tl.PATH_CALLS): self.api_calls,
            ("POST", tl.PATH_DIAL): self.api_dial,
            ("POST", tl.PATH_EVENTS): self.api_events,
            ("GET", tl.PATH_STATUS): self.api_status,
        }
        try:
            self._server = ApiServer(routes, self._authorise, host=self.host, port=self._port,
                                     max_body=tl.MAX_POST_BYTES,
                                     tls=self.cert.context(), error_body=error_body)
        except OSError as exc:
            raise UserError(Text(
                f"the team API cannot listen on {self.host}:{self._port}: {exc.strerror or exc}"
                " (another team server on this machine? choose another with --listen)",
                f"API команды не может слушать {self.host}:{self._port}: "
                f"{exc.strerror or exc} (на этом компьютере уже работает сервер команды? "
                "укажите другой адрес в --listen)")) from exc
        self._server.serve()
        log.info("%s", Text(
            f"team API at {self.url}, certificate SHA-256 {self.fingerprint}",
            f"API команды: {self.url}, отпечаток сертификата SHA-256 {self.fingerprint}",
        ).both())
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    # ------------------------------------------------------------------ who asks

    def _authorise(self, headers: Any) -> User:
        token = bearer(headers)
        try:
            user = self.users.check(token) if token else None
        except Exception as exc:  # the database is down: say so, never a silent drop
            log.error("team API: token check failed: %r", exc)
            raise ApiError(503, Text("the team database is not available, try again",
                                     "база данных команды недоступна, повторите")) from exc
        if user is None:
            raise ApiError(401, Text(
                "missing or wrong team token (pz-excel team user add gives one)",
                "нет токена команды или он неверный (его выдаёт pz-excel team user add)"))
        return user

    # ------------------------------------------------------------------ handlers

    def api_whoami(self, params: dict, body: dict, user: User) -> dict:
        return {tl.F_EXTENSION: user.extension, tl.F_NAME: user.name, tl.F_ROLE: user.role}

    def api_status(self, params: dict, body: dict, user: User) -> dict:
        extra = dict(self.status()) if self.status is not None else {}
        return {**extra, tl.F_ROLE: self.role(), tl.F_LEADER: self.leader_address()}

    def api_last_call(self, params: dict, body: dict, user: User) -> dict:
        key = phones.normalize(params.get(tl.F_NUMBER, ""), area_code=self.area_code)
        if key is None:
            raise ApiError(400, Text("not a phone number", "это не номер телефона"))
        rows = self.journal.recent_calls(limit=1, number_key=key)
        return {tl.F_CALL: call_json(rows[0] if rows else None)}

    def api_calls(self, params: dict, body: dict, user: User) -> dict:
        since, until = _when(params, "since"), _when(params, "until")
        limit = int_param(params, "limit", DEFAULT_CALLS, 1, MAX_CALLS)
        rows = list(export.calls(self.db, since, until, extension=user.extension, limit=limit,
                                 newest_first=True))
        return {tl.F_CALLS: [call_json(r) for r in rows]}

    def api_dial(self, params: dict, body: dict, user: User) -> dict:
        number = str(body.get(tl.F_NUMBER) or "").strip()
        ext = user.extension  # From: the token's extension, never the body's

        def audited(result: str, detail: str = "") -> None:
            self.users.audit(ext, "dial", number=number, result=result, detail=detail)

        problem = phones.dial_problem(number, ext, self.area_code)
        if problem is not None:
            audited("refused", problem.en)
            raise ApiError(400, problem)
        if self.role() != tl.ROLE_LEADER or self.dial is None:
            leader = self.leader_address()
            audited("standby", leader)
            where_en, where_ru = (f" at {leader}", f" ({leader})") if leader else ("", "")
            raise ApiError(503, Text(
                f"this team server is a standby: dial through the leader{where_en}",
                f"этот сервер команды — резервный: звоните через ведущий{where_ru}"),
                {tl.F_LEADER: leader})
        try:
            done = self.dial(ext, number)
        except ApiError as exc:
            audited("failed", exc.text.en)
            raise
        except ConnectorError as exc:
            audited("failed", exc.text.en)
            raise ApiError(503, exc.text) from exc
        except UserError as exc:
            audited("failed", exc.text.en)
            raise ApiError(400, exc.text) from exc
        except Exception as exc:
            audited("failed", f"{type(exc).__name__}: {exc}")
            raise
        reply: dict[str, Any] = {tl.F_EXTENSION: ext, tl.F_NUMBER: number}
        if isinstance(done, Mapping):
            reply.update(done)
        elif getattr(done, "code", None) is not None:
            reply["code"] = done.code
        code = reply.get("code", 0)
        audited("ok" if code in (0, None) else f"code {code}")
        return reply

    def api_events(self, params: dict, body: dict, user: User) -> dict:
        items = body.get(tl.F_EVENTS)
        if not isinstance(items, list):
            raise ApiError(400, Text('the body needs "events": a list of events',
                                     "в теле нужен список событий «events»"))
        if len(items) > tl.MAX_EVENTS_PER_POST:
            raise ApiError(400, Text(
                f"at most {tl.MAX_EVENTS_PER_POST} events per request",
                f"не больше {tl.MAX_EVENTS_PER_POST} событий в одном запросе"))
        ext = user.extension
        results: list[dict[str, Any]] = []
        merged = refused = bad = 0
        for item in items:
            event = _event(item)
            if event is None:
                bad += 1
                results.append({tl.F_CALL_ID: str(item.get(tl.F_CALL_ID, ""))
                                if isinstance(item, Mapping) else "", "status": 400})
                continue
            if ext not in (phones.extension(event.from_), phones.extension(event.to)):
                refused += 1
                results.append({tl.F_CALL_ID: event.call_id, "status": 403})
                continue
            changed = self.journal.apply_event(event, self.mapper, reused=reported_reuse)
            merged += changed is not None
            results.append({tl.F_CALL_ID: event.call_id, "status": 200,
                            "changed": changed is not None})
        if refused:
            self.users.audit(ext, "events", result=f"refused {refused}",
                             detail="events of another extension")
        accepted = len(items) - refused - bad
        if items and not accepted:  # nothing taken: the request as a whole fails
            status, text = (403, Text(
                f"these events are not extension {ext}'s (neither from nor to is it)",
                f"это не события добавочного {ext} (ни from, ни to не совпадают)")) \
                if refused else (400, Text(
                    'each event needs "type" (a number), "callID" and "attrs"',
                    "у каждого события должны быть «type» (число), «callID» и «attrs»"))
            raise ApiError(status, text, {"results": results})
        return {"accepted": accepted, "changed": merged, "refused": refused, "bad": bad,
                "results": results}
