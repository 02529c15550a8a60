"""The local API's handlers: what ``pz-excel status``/``call``, the ribbon and the PZ_*
worksheet functions ask the running agent (the HTTP server itself is ``api.LocalApi``).

A mixin of ``Agent``: the handlers read the agent's journal, contacts and connection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pz_excel.agent import notify, sms
from pz_excel.agent.api import ApiError
from pz_excel.agent.teamlink import LastCallCache, TeamError
from pz_excel.books import BookLocked, BookUnpatchable
from pz_excel.books.contacts_append import ContactAppend
from pz_excel.connector.client import ConnectorError
from pz_excel.crm import phones
from pz_excel.crm.contacts import build_index
from pz_excel.crm.schema import CallRow
from pz_excel.i18n import Text
from pz_excel.protocol import codec as protocol

log = logging.getLogger("pz_excel.agent.handlers")
#: Numbers one ``/lookups`` request may carry.
MAX_LOOKUPS = 1000

# PZ_CALL guard: a new once-key dial within this many seconds of the previous one is
# refused (a fill-down or a workbook opening would otherwise dial a whole column).
ONCE_GUARD_SECONDS = 3.0


def empty_contacts_warning(contacts: int, fallback: str) -> Text | None:
    """Said when Contacts has no usable rows (a new workbook starts so): no caller can be
    matched, so smart transfer does nothing — easy to miss in a quiet "contacts loaded: 0".
    The one text for the agent's log and ``status``."""
    if contacts:
        return None
    fallback = (fallback or "").strip()
    if fallback:
        return Text(
            "Contacts has no usable rows (a name and a phone): every caller goes to the "
            f"fallback extension {fallback}, no smart transfer, until Contacts has rows",
            "на листе «Контакты» нет ни одной строки с телефоном: все звонки уходят на "
            f"добавочный по умолчанию {fallback}, умной переадресации нет, пока вы не "
            "добавите контакты",
        )
    return Text(
        "Contacts has no usable rows (a name and a phone): every caller will be declined "
        "(no smart transfer; the PBX routes the call as usual) until Contacts has rows",
        "на листе «Контакты» нет ни одной строки с телефоном: агент отклонит каждый звонок "
        "(умной переадресации нет, АТС направит звонок как обычно), пока вы не добавите "
        "контакты",
    )


NO_TEAM = Text(
    "no team server: start the agent with --team URL --team-token TOKEN",
    "командный сервер не задан: запустите агента с --team URL --team-token ТОКЕН",
)


def _row_json(row: CallRow) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.values().items():
        out[key] = (
            value.isoformat(sep=" ", timespec="seconds") if isinstance(value, datetime) else value
        )
    return out


class ApiHandlers:
    """Routes and handlers of the local API (mixed into ``Agent``)."""

    # What the handlers use of the agent (set by ``Agent``).
    config: Any
    journal: Any
    client: Any
    watcher: Any
    book: Any
    inbox: Any
    _book_io: Any  # the book's one writer at a time (the Calls writer takes it too)
    _sms: sms.SmsTracker | None = None
    reporter: Any = None  # teamreport.TeamReporter when a team server is configured
    _team_calls: LastCallCache | None = None

    # ------------------------------------------------------------------ local API

    def _routes(self) -> dict[tuple[str, str], Callable[[dict, dict], dict]]:
        return {
            ("GET", "/status"): self.api_status,
            ("POST", "/call"): self.api_call,
            ("POST", "/transfer"): self.api_transfer,
            ("GET", "/calls"): self.api_calls,
            ("GET", "/lookup"): self.api_lookup,
            ("POST", "/lookups"): self.api_lookups,
            ("GET", "/stats"): self.api_stats,
            ("GET", "/missed"): self.api_missed,
            ("POST", "/refresh"): self.api_refresh,
            ("POST", "/contacts"): self.api_add_contact,
            ("POST", "/sms"): self.api_sms,
            ("GET", "/sms"): self.api_sms_status,
            ("POST", "/stop"): self.api_stop,
            ("GET", "/team/last-call"): self.api_team_last_call,
        }

    def status(self) -> dict[str, Any]:
        assert self.client is not None and self.journal is not None
        state = self.client.state
        stats = self.journal.stats()
        return {
            "state": state.kind,
            "state_text": str(state.text),
            # both tongues: the reader (CLI, ribbon, formula) may not speak the agent's
            "state_text_en": state.text.en,
            "state_text_ru": state.text.ru,
            "retry_in": state.retry_in,
            "phone": self.config.phone,
            "area_code": self.config.area_code,
            "server": self.config.settings.url,
            "workbook": str(self.config.workbook),
            "journal": str(self.config.journal),
            "last_event": self.last_event,
            "contacts": len(self.index),
            "warnings": self.warnings(),
            "pending_rows": stats.get("dirty", 0),
            "waiting_to_save": self.inbox.waiting,
            "journal_error": str(self.inbox.status()) if self.inbox.status() else None,
            "book": self.book.kind,
            "book_error": str(self.book_error) if self.book_error else None,
            "team": self.team_status(),
        }

    def team_status(self) -> dict[str, Any] | None:
        """The team server this agent defers to and reports to, or None."""
        team = self.config.team
        if team is None:
            return None
        reporter = self.reporter
        problem = reporter.problem if reporter is not None else None
        return {
            "url": team.url,
            "reported_seq": reporter.reported_seq if reporter is not None else 0,
            "problem_en": problem.en if problem else None,
            "problem_ru": problem.ru if problem else None,
        }

    def warnings(self) -> list[str]:
        """What the user should fix, for ``status``: an empty Contacts first, then the
        contact rows' problems."""
        empty = empty_contacts_warning(len(self.index), self.config.fallback)
        return ([str(empty)] if empty else []) + [str(w) for w in self.index.warnings[:50]]

    def api_status(self, params: dict, body: dict) -> dict:
        return self.status()

    def _normalize(self, number: object) -> str | None:
        """``phones.normalize`` with this workbook's area code (as its contacts were)."""
        return phones.normalize(number, area_code=self.config.area_code)

    def check_dial(self, number: str) -> str:
        """``number`` stripped, or ``ApiError`` 400 saying why it is not dialled (the rule:
        ``phones.dial_problem``). Before anything is written: a refused number leaves no
        trace in the journal or on the Calls sheet."""
        number = (number or "").strip()
        problem = phones.dial_problem(number, self.config.phone, self.config.area_code)
        if problem is not None:
            raise ApiError(400, problem)
        return number

    def place_call(self, number: str) -> protocol.Response:
        assert self.client is not None and self.journal is not None
        number = self.check_dial(number)
        journal = self.journal
        self.inbox.store(lambda: journal.record("request", {"method": "Call", "to": number}))
        try:
            resp = self.client.call(number, timeout=5.0)
        except ConnectorError as exc:
            failed = {"request": "Call", "error": exc.text.en}
            self.inbox.store(lambda: journal.record("response", failed))
            raise ApiError(503, exc.text) from exc
        self.inbox.store(lambda: journal.record("response", {"request": "Call", "code": resp.code}))
        return resp

    def api_call(self, params: dict, body: dict) -> dict:
        assert self.journal is not None
        number = self.check_dial(str(body.get("number") or ""))  # before the once-key
        once_key = str(body.get("once_key") or "")
        now = datetime.now()
        if once_key:
            with self._once_lock:
                previous = self.journal.once_get(once_key)
                if previous is not None:
                    return {
                        "code": 0,
                        "already": True,
                        "at": previous,
                        "message": str(
                            Text(f"called at {previous[11:16]}", f"звонок был в {previous[11:16]}")
                        ),
                    }
                if time.monotonic() - self._last_once_dial < ONCE_GUARD_SECONDS:
                    return {
                        "code": -1,
                        "already": False,
                        "at": None,
                        "message": str(
                            Text(
                                "not dialled: another formula dialled a moment ago "
                                "(fill-down or recalculation guard)",
                                "не набрано: другая формула только что звонила "
                                "(защита от протягивания и пересчёта)",
                            )
                        ),
                    }
                self._last_once_dial = time.monotonic()
                self.journal.once_put(once_key, now.isoformat(sep=" ", timespec="seconds"))
        resp = self.place_call(number)
        message = (
            Text("calling…", "звоним…")
            if resp.ok
            else Text(
                f"connector refused the call (code {resp.code})",
                f"коннектор отклонил звонок (код {resp.code})",
            )
        )
        return {
            "code": resp.code,
            "already": False,
            "at": now.isoformat(sep=" ", timespec="seconds"),
            "message": str(message),
        }

    def api_transfer(self, params: dict, body: dict) -> dict:
        assert self.client is not None
        call_id = str(body.get("call_id") or "").strip()
        if not call_id:
            raise ApiError(400, Text("call_id is required", "нужен call_id"))
        try:
            resp = self.client.transfer(call_id, str(body.get("to") or ""), timeout=5.0)
        except ConnectorError as exc:
            raise ApiError(503, exc.text) from exc
        return {"code": resp.code}

    def api_calls(self, params: dict, body: dict) -> dict:
        assert self.journal is not None
        limit = max(1, min(int(params.get("limit") or 50), 1000))
        key = self._normalize(params["number"]) if params.get("number") else None
        rows = self.journal.recent_calls(limit=limit, number_key=key)
        return {"calls": [_row_json(r) for r in rows]}

    def api_lookup(self, params: dict, body: dict) -> dict:
        number = params.get("number", "")
        key = self._normalize(number)
        contact = self.index.lookup(number) if key else None
        payload: dict[str, Any] = {
            "number": number,
            "key": key,
            "display": phones.display(key) if key else number,
            "contact": None,
            "extension": None,
        }
        if contact is not None:
            payload["contact"] = {
                "name": contact.name,
                "phone": contact.phone,
                "owner": contact.owner,
                "company": contact.company,
                "row": contact.row,
            }
            payload["extension"] = self.index.owner_extension(contact.owner)
        return payload

    def api_lookups(self, params: dict, body: dict) -> dict:
        """``/lookup`` for many numbers at once (a recalculation's formulas, gathered by
        the UDFs' link): one request instead of hundreds."""
        numbers = body.get("numbers")
        if not isinstance(numbers, list) or len(numbers) > MAX_LOOKUPS:
            raise ApiError(400, Text(f"numbers: a list of at most {MAX_LOOKUPS}",
                                     f"numbers: список не длиннее {MAX_LOOKUPS}"))
        return {"results": [self.api_lookup({"number": str(n)}, {}) for n in numbers]}

    def api_stats(self, params: dict, body: dict) -> dict:
        assert self.journal is not None
        key = self._normalize(params.get("number", ""))
        if key is None:
            raise ApiError(400, Text("not a phone number", "это не номер телефона"))
        days = params.get("days")
        since = datetime.now() - timedelta(days=float(days)) if days else None
        last = self.journal.recent_calls(limit=1, number_key=key)
        return {
            "count": self.journal.count_calls(number_key=key, since=since),
            "last": _row_json(last[0]) if last else None,
        }

    def api_missed(self, params: dict, body: dict) -> dict:
        assert self.journal is not None
        owner = params.get("owner") or None
        rows = self.journal.missed_not_called_back(owner=owner, limit=200)
        count = self.journal.count_missed_not_called_back(owner=owner)
        return {"count": count, "calls": [_row_json(r) for r in rows]}

    def api_refresh(self, params: dict, body: dict) -> dict:
        assert self.watcher is not None
        live = self.book.read_live_contacts()
        if live is not None:  # open in Excel: take what the user sees, saved or not
            contacts, managers = live
            self.watcher.swap(
                build_index(
                    contacts,
                    managers or None,
                    source=self.config.workbook,
                    area_code=self.config.area_code,
                )
            )
        else:
            error = self.watcher.refresh()
            if error is not None:
                raise ApiError(400, error)
        return {"contacts": len(self.index), "warnings": [str(w) for w in self.index.warnings]}

    def api_team_last_call(self, params: dict, body: dict) -> dict:
        """PZ_TEAM_LAST: the team's last call with this client (any manager's), asked of
        the team server (answers kept a few seconds: Excel asks per cell)."""
        team = self.config.team
        if team is None:
            raise ApiError(409, NO_TEAM)
        key = self._normalize(params.get("number", ""))
        if key is None:
            raise ApiError(400, Text("not a phone number", "это не номер телефона"))
        with self._once_lock:  # made once, by whichever request comes first
            if self._team_calls is None:
                self._team_calls = LastCallCache(team)
            cache = self._team_calls
        try:
            return {"call": cache.get(key)}
        except TeamError as exc:
            raise ApiError(503 if exc.status is None else 502, exc.text) from exc

    def api_stop(self, params: dict, body: dict) -> dict:
        # Answer first, stop right after: the caller gets its reply.
        threading.Thread(target=self.stop, name="pz-stop", daemon=True).start()
        return {}

    # ------------------------------------------------------------------ contacts and SMS

    def api_add_contact(self, params: dict, body: dict) -> dict:
        """One row at the end of Contacts for a caller not there yet (``pz-excel contact
        add``), then contacts are read again so the next call from the number is routed.
        Refused before anything is written: not a phone number, an owner not in
        Managers, a number that is already a contact's."""
        assert self.book is not None and self.watcher is not None
        raw = str(body.get("number") or "")
        key = self._normalize(raw)
        if key is None:
            raise ApiError(400, sms.not_a_number(raw, self.config.area_code))
        if phones.is_internal(key):
            raise ApiError(400, Text(
                f"{raw.strip()} is an internal extension, not a caller's number",
                f"{raw.strip()} — внутренний добавочный, а не номер клиента",
            ))
        name = " ".join(str(body.get("name") or "").split())
        if not name:
            raise ApiError(400, Text("the contact needs a name", "у контакта должно быть имя"))
        owner = self._known_owner(str(body.get("owner") or ""))
        index = self.index
        taken = index.lookup_key(key)
        if taken is not None:
            raise ApiError(409, Text(
                f"{phones.display(key)} is already a contact: {taken.name} (row {taken.row} "
                f"of Contacts, owner {taken.owner or '—'})",
                f"{phones.display(key)} уже есть в контактах: {taken.name} (строка "
                f"{taken.row} листа «Контакты», ответственный {taken.owner or '—'})",
            ))
        if body.get("check"):
            # The ribbon, in Excel: the book is Excel's while open, so the macro writes the
            # row itself and then asks for /refresh; here only the checks and the values.
            return {"row": None, "number": key, "display": phones.display(key), "name": name,
                    "owner": owner, "extension": self.index.owner_extension(owner)}
        writer = ContactAppend(name, phones.display(key), owner)
        try:
            with self._book_io:
                written = self.book.write_parts(writer)
        except (BookLocked, BookUnpatchable) as exc:
            raise ApiError(409, exc.text) from exc
        if not written:  # the file is Excel's while it has the book open
            raise ApiError(409, Text(
                f"{self.config.workbook.name} is open in Excel: the contact was not added; "
                "type it into Contacts there (Name, Phone, Owner) and save, or close the "
                "workbook and run the command again",
                f"книга {self.config.workbook.name} открыта в Excel: контакт не добавлен; "
                "впишите его на лист «Контакты» там (Имя, Телефон, Ответственный) и "
                "сохраните или закройте книгу и повторите команду",
            ))
        journal = self.journal
        entry = {"added": "contact", "number": key, "name": name, "owner": owner,
                 "row": writer.row}
        self.inbox.store(lambda: journal.record("contact", entry))
        error = self.watcher.refresh()  # now, not at the next poll: routing knows it
        if error is not None:
            log.warning("%s", error)
        return {"row": writer.row, "number": key, "display": phones.display(key),
                "name": name, "owner": owner, "extension": self.index.owner_extension(owner)}

    def _known_owner(self, owner: str) -> str:
        """``owner`` as Managers spells it (a name, or an extension listed there), or
        ``ApiError`` 400 naming the known managers."""
        index = self.index
        text = " ".join(owner.split())
        # Routing's own reading of an Owner cell: a Managers name, or an extension as it is
        # (spelled as Managers lists it); only digits that make no extension are refused.
        if index.owner_extension(text) is not None and (
            not text.isdigit() or phones.extension(text) == text
        ):
            return index.owner_name(text)
        names: dict[str, str] = getattr(index.managers, "names", {})  # extension -> name
        known = ", ".join(f"{n} ({e})" for e, n in sorted(names.items(), key=lambda x: x[1]))
        if not text:
            raise ApiError(400, Text(f"give the owner: one of {known or '—'}",
                                     f"укажите ответственного: {known or '—'}"))
        if not known:
            raise ApiError(400, Text(
                f"owner '{text}' is not on the Managers sheet, which is empty: add the "
                "managers (Owner, Extension) first",
                f"ответственного «{text}» нет на листе «Менеджеры», а он пуст: сначала "
                "добавьте менеджеров (Ответственный, Добавочный)",
            ))
        raise ApiError(400, Text(
            f"owner '{text}' is not on the Managers sheet; known: {known}",
            f"ответственного «{text}» нет на листе «Менеджеры»; есть: {known}",
        ))

    def _sms_tracker(self) -> sms.SmsTracker:
        assert self.client is not None
        with self._once_lock:  # made once, by whichever request comes first
            if self._sms is None:
                self._sms = sms.SmsTracker(on_done=self._sms_done)
            tracker = self._sms
        tracker.attach(self.client.subscribe)
        return tracker

    def _sms_done(self, call_id: str, to: str, status: str) -> None:
        """An SMS ended: the log and a toast (the ribbon's Send SMS does not wait for it)."""
        text = (
            Text(f"SMS to {to} sent", f"SMS на {to} отправлено")
            if status == sms.SENT
            else Text(f"SMS to {to} was not sent", f"SMS на {to} не отправлено")
        )
        log.info("%s (%s)", text, call_id)
        notify.notify("Простые Звонки", str(text))

    def api_sms(self, params: dict, body: dict) -> dict:
        """Send an SMS from the user's phone (``Generate`` 128 with a call ID of ours);
        its status comes as type-256 events: ``GET /sms?call_id=``."""
        assert self.client is not None and self.journal is not None
        to = sms.check_number(body.get("to"), self.config.area_code)
        text = sms.check_text(body.get("text"))
        tracker = self._sms_tracker()
        call_id = sms.new_call_id()
        tracker.track(call_id, to)  # before the request: a quick status is not missed
        journal = self.journal
        request = {"method": "Generate", "event": 128, "to": to, "chars": len(text)}
        self.inbox.store(lambda: journal.record("request", request, call_id=call_id))
        try:
            resp = self.client.send_sms(to, text, timeout=5.0, call_id=call_id)
        except ConnectorError as exc:
            tracker.fail(call_id)
            failed = {"request": "Generate", "error": exc.text.en}
            self.inbox.store(lambda: journal.record("response", failed, call_id=call_id))
            raise ApiError(503, exc.text) from exc
        answer = {"request": "Generate", "code": resp.code}
        self.inbox.store(lambda: journal.record("response", answer, call_id=call_id))
        if not resp.ok:
            tracker.fail(call_id)
            raise ApiError(502, Text(
                f"the connector refused the SMS (code {resp.code})",
                f"коннектор отклонил SMS (код {resp.code})",
            ))
        return {"call_id": call_id, "to": to, "status": sms.SENDING}

    def api_sms_status(self, params: dict, body: dict) -> dict:
        call_id = (params.get("call_id") or "").strip()
        if not call_id:
            raise ApiError(400, Text("call_id is required", "нужен call_id"))
        if self._sms is None:
            return {"call_id": call_id, "status": sms.UNKNOWN, "to": ""}
        return self._sms.status(call_id)
