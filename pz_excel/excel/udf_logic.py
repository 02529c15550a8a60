"""What the worksheet functions (``udfs/pz_udfs.py``) compute, without xlwings.

Excel calls a UDF for every cell on every recalculation, so each function here:

* answers from the running agent's local API with a short timeout (``UDF_TIMEOUT``) and
  reuses the discovered client for a while (a sheet of 500 formulas discovers once);
* remembers a failure briefly, so a hung or absent agent costs one timeout, not 500;
* returns readable text in the user's language — never raises, never a traceback.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pz_excel.agent.api import ApiClient
from pz_excel.agent.discovery import AgentUnavailable
from pz_excel.agent.status_text import STATE_WORDS
from pz_excel.crm import phones
from pz_excel.crm.schema import WORDS, word
from pz_excel.crm.schema import cell_text as schema_cell_text
from pz_excel.i18n import Text, UserError, current_lang

log = logging.getLogger("pz_excel.udfs")

UDF_TIMEOUT = 0.2  # s per request: Excel waits for every formula
CLIENT_TTL = 10.0  # s a discovered agent is reused before looking again
FAIL_TTL = 1.0  # s a failure is remembered: one slow answer, not one per cell

AGENT_DOWN = Text("agent not running", "агент не запущен")
AGENT_SLOW = Text("agent not answering", "агент не отвечает")
NOT_A_NUMBER = Text("not a phone number", "не номер телефона")
NO_NUMBER = Text("no number", "нет номера")
NOT_IN_CONTACTS = Text("not in Contacts", "нет в контактах")
NO_CALLS = Text("no calls", "звонков не было")

Value = str | int


class _AgentDown(Exception):
    """The agent is known to be absent or slow right now (a remembered failure)."""

    def __init__(self, text: Text):
        super().__init__(text.en)
        self.text = text


def _is_timeout(exc: BaseException) -> bool:
    cause = exc.__cause__
    return isinstance(cause, TimeoutError)


#: How long the first of several simultaneous lookups waits for the others (``lookup``).
GATHER = 0.003
#: Lookups sent in one request at most (the agent takes up to 1000).
MAX_GATHER = 500


class _Gathered:
    """Lookups asked at the same moment, sent as one request."""

    def __init__(self) -> None:
        self.numbers: list[str] = []
        self.results: list[dict] = []
        self.error: BaseException | None = None
        self.done = threading.Event()


class AgentLink:
    """The UDFs' way to the agent: discovery cached per workbook, failures remembered."""

    def __init__(
        self,
        *,
        timeout: float = UDF_TIMEOUT,
        ttl: float = CLIENT_TTL,
        fail_ttl: float = FAIL_TTL,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.timeout = min(timeout, UDF_TIMEOUT)
        self.ttl = ttl
        self.fail_ttl = fail_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[ApiClient, float]] = {}
        self._down: tuple[Text, float] | None = None
        self._gathering: dict[str, _Gathered] = {}  # per workbook: lookups not sent yet
        self.discoveries = 0  # for tests and diagnostics

    def client(self, workbook: str | None = None) -> ApiClient:
        now = self._clock()
        with self._lock:
            if self._down is not None and now < self._down[1]:
                raise _AgentDown(self._down[0])
            cached = self._clients.get(workbook or "")
            if cached is not None and now < cached[1]:
                return cached[0]
            self.discoveries += 1
            try:
                client = ApiClient.discover(workbook=workbook, timeout=self.timeout)
            except AgentUnavailable:
                self._down = (AGENT_DOWN, now + self.fail_ttl)
                raise _AgentDown(AGENT_DOWN) from None
            self._clients[workbook or ""] = (client, now + self.ttl)
            self._down = None
            return client

    def _request(
        self, do: Callable[[ApiClient], dict], workbook: str | None, remember_slow: bool = True
    ) -> dict:
        client = self.client(workbook)
        try:
            return do(client)
        except AgentUnavailable as exc:
            slow = _is_timeout(exc)
            text = AGENT_SLOW if slow else AGENT_DOWN
            with self._lock:
                if not slow:  # refused: the agent is gone, look for it again next time
                    self._clients.pop(workbook or "", None)
                if remember_slow or not slow:
                    self._down = (text, self._clock() + self.fail_ttl)
            raise _AgentDown(text) from exc

    def get(self, path: str, workbook: str | None = None, **params: object) -> dict:
        return self._request(lambda c: c.get(path, **params), workbook)

    def lookup(self, number: str, workbook: str | None = None) -> dict:
        """``/lookup`` of one number — asked together with whatever other formulas ask at
        the same moment (Excel recalculating a column of ``PZ_OWNER``): the first caller
        waits ``GATHER`` for companions and sends one ``/lookups`` for all of them, so 200
        formulas cost a few requests, not 200 (the agent's pool would queue them)."""
        key = workbook or ""
        with self._lock:
            batch = self._gathering.get(key)
            leads = batch is None or len(batch.numbers) >= MAX_GATHER
            if leads:
                batch = self._gathering[key] = _Gathered()
            assert batch is not None
            slot = len(batch.numbers)
            batch.numbers.append(number)
        if leads:
            time.sleep(GATHER)
            with self._lock:
                if self._gathering.get(key) is batch:
                    del self._gathering[key]
            try:
                reply = self._request(lambda c: c.post("/lookups", {"numbers": batch.numbers}),
                                      workbook)
                batch.results = list(reply.get("results") or [])
            except Exception as exc:  # noqa: BLE001 - every companion gets the same answer
                batch.error = exc
            finally:
                batch.done.set()
        elif not batch.done.wait(self.timeout + GATHER):
            raise _AgentDown(AGENT_SLOW)
        if batch.error is not None:
            raise batch.error
        return batch.results[slot] if slot < len(batch.results) else {}

    def post(self, path: str, body: dict[str, Any], workbook: str | None = None) -> dict:
        # A POST may wait on the connector (a dial): slow there says nothing about the
        # agent's health, so it does not pause the other formulas.
        return self._request(lambda c: c.post(path, body), workbook, remember_slow=False)


LINK = AgentLink()


def _safe(fn: Callable[..., Value]) -> Callable[..., Value]:
    """Any failure becomes a short text in the cell (Excel would show #VALUE! otherwise)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Value:
        try:
            return fn(*args, **kwargs)
        except _AgentDown as exc:
            return str(exc.text)
        except UserError as exc:
            return str(exc.text)
        except Exception as exc:  # a cell shows the problem, Excel goes on
            log.exception("UDF %s failed", fn.__name__)
            return str(Text(f"error: {exc}", f"ошибка: {exc}"))

    return wrapper


# ---------------------------------------------------------------------- cell values


def cell_text(value: object) -> str:
    """A cell's value as text (a phone typed as a number arrives as a float, 7.9e10); a
    range gives its first non-empty cell."""
    if isinstance(value, (list, tuple)):  # a range was passed: its first non-empty cell
        for item in value:
            text = cell_text(item)
            if text:
                return text
        return ""
    return schema_cell_text(value)  # one rule for a cell's text: crm/schema.py


def _key(number: object) -> str:
    """The normalised number; raises a user error with a cell-sized reason."""
    raw = cell_text(number)
    if not raw:
        raise UserError(NO_NUMBER)
    key = phones.normalize(raw)
    if key is None:
        # "555-00-00": a local number means something only with the workbook's area code,
        # which the agent has (its Settings); it normalises what it is sent with it.
        key = phones.local_digits(raw)
    if key is None:
        raise UserError(NOT_A_NUMBER)
    return key


def _int_arg(value: object, default: int | None = None) -> int | None:
    text = cell_text(value)
    if not text:
        return default
    try:
        number = float(text.replace(",", "."))
    except ValueError:
        raise UserError(Text(f"not a number: {text}", f"не число: {text}")) from None
    if number < 0:
        raise UserError(Text("days must be 0 or more", "число дней должно быть ≥ 0"))
    return int(number)


def _parse_time(text: object) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


# ---------------------------------------------------------------------- the functions


def format_status(status: Mapping[str, Any]) -> str:
    """``connected · ext 101`` — short enough for a cell."""
    state = str(status.get("state") or "")
    if state == "retrying":
        wait = status.get("retry_in")
        text = (
            Text(f"reconnecting in {wait:.0f} s", f"переподключение через {wait:.0f} с")
            if isinstance(wait, (int, float))
            else Text("reconnecting", "переподключение")
        )
    else:
        text = STATE_WORDS.get(state) or Text(
            str(status.get("state_text") or state), str(status.get("state_text") or state)
        )
    phone = status.get("phone")
    if phone:
        text = Text(f"{text.en} · ext {phone}", f"{text.ru} · доб. {phone}")
    if state == "stopped" and status.get("state_text"):
        en = status.get("state_text_en") or status["state_text"]
        ru = status.get("state_text_ru") or status["state_text"]
        text = Text(f"{text.en}: {en}", f"{text.ru}: {ru}")
    return str(text)


@_safe
def pz_status(link: AgentLink | None = None) -> Value:
    """Connection state of the agent, e.g. ``connected · ext 101``."""
    return format_status((link or LINK).get("/status"))


@_safe
def pz_normalize(number: object, link: AgentLink | None = None) -> Value:
    """The number as people read it (``+7 343 011-22-33``); local, no agent needed —
    except for a local number (``555-00-00``): only the workbook's area code (Settings,
    which the agent read) says whose it is, so the agent is asked."""
    raw = cell_text(number)
    if not raw:
        return ""
    key = phones.normalize(raw)
    if key is None and phones.local_digits(raw) is not None:
        key = (link or LINK).get("/lookup", number=raw).get("key")
    return phones.display(key) if key else str(NOT_A_NUMBER)


def format_owner(lookup: Mapping[str, Any]) -> str:
    contact = lookup.get("contact")
    if not contact:
        return str(NOT_IN_CONTACTS)
    owner = str(contact.get("owner") or "").strip()
    ext = str(lookup.get("extension") or "").strip()
    if not owner:
        return str(Text("no owner", "нет ответственного"))
    return f"{owner} ({ext})" if ext and ext != owner else owner


@_safe
def pz_owner(number: object, link: AgentLink | None = None) -> Value:
    """``Owner name (ext)`` of the contact with this number."""
    return format_owner((link or LINK).lookup(_key(number)))


def format_call(row: Mapping[str, Any], lang: str) -> str:
    """``2026-11-23 10:42 incoming answered 35 s`` from an API call row."""
    parts: list[str] = []
    start = _parse_time(row.get("start"))
    if start is not None:
        parts.append(start.strftime("%Y-%m-%d %H:%M"))
    for key in ("direction", "status"):
        value = str(row.get(key) or "")
        if value:
            parts.append(word(value, lang) if value in WORDS else value)
    duration = row.get("duration")
    if isinstance(duration, (int, float)) and row.get("status") != "missed":
        parts.append(f"{int(duration)} {'с' if lang == 'ru' else 's'}")
    return " ".join(parts)


@_safe
def pz_lastcall(number: object, link: AgentLink | None = None) -> Value:
    """The latest call with this number: when, direction, status, talk time."""
    stats = (link or LINK).get("/stats", number=_key(number))
    last = stats.get("last")
    return format_call(last, current_lang()) if last else str(NO_CALLS)


@_safe
def pz_calls(number: object, days: object = None, link: AgentLink | None = None) -> Value:
    """How many calls with this number (in the last ``days`` days, if given)."""
    key = _key(number)
    stats = (link or LINK).get("/stats", number=key, days=_int_arg(days))
    return int(stats.get("count") or 0)


@_safe
def pz_missed(owner: object = None, link: AgentLink | None = None) -> Value:
    """Missed incoming calls not yet called back (of one owner, if given)."""
    answer = (link or LINK).get("/missed", owner=cell_text(owner) or None)
    return int(answer.get("count") or 0)


def format_team_call(call: Mapping[str, Any], lang: str) -> str:
    """``2026-11-23 10:42 Boris Ivanov (102) incoming answered 35 s``: when, who of the
    team, direction and status, from a team server call row."""
    row = dict(call)
    start = _parse_time(row.get("start") or row.get("started"))
    when = start.strftime("%Y-%m-%d %H:%M") if start is not None else ""
    rest = format_call({**row, "start": None}, lang)  # direction, status, talk time
    owner = str(row.get("owner") or "").strip()
    ext = str(row.get("extension") or "").strip()
    who = f"{owner} ({ext})" if owner and ext and owner != ext else (owner or ext)
    return " ".join(part for part in (when, who, rest) if part)


@_safe
def pz_team_last(number: object, link: AgentLink | None = None) -> Value:
    """The team's last call with this client (any manager's), from the team server; ""
    when there was none."""
    answer = (link or LINK).get("/team/last-call", number=_key(number))
    call = answer.get("call")
    return format_team_call(call, current_lang()) if call else ""


# ---------------------------------------------------------------------- PZ_CALL


@dataclass(frozen=True)
class CallerCell:
    """Where a formula sits: what makes "once per cell" (from xlwings' ``caller``)."""

    book: str  # the workbook's file name
    sheet: str
    address: str  # e.g. $B$2
    path: str = ""  # full path when saved, to find this workbook's agent
    cells: int = 1


def once_key(cell: CallerCell, key: str) -> str:
    """Workbook + sheet + cell + normalised number: the same cell never dials it twice."""
    return f"{cell.book}|{cell.sheet}|{cell.address.replace('$', '').upper()}|{key}"


def format_call_result(result: Mapping[str, Any], today: date | None = None) -> str:
    today = today or date.today()
    code = result.get("code")
    at = _parse_time(result.get("at"))
    if result.get("already"):
        if at is None:
            return str(Text("already called", "звонок уже был"))
        when = at.strftime("%H:%M") if at.date() == today else at.strftime("%Y-%m-%d %H:%M")
        return str(Text(f"called at {when}", f"звонок был в {when}"))
    if code == 0:
        return str(Text("calling…", "звоним…"))
    message = str(result.get("message") or "")
    if code == -1 and message:  # the agent's own reason (fill-down guard)
        return message
    return str(Text(f"call refused (code {code})", f"звонок отклонён (код {code})"))


@_safe
def pz_call(
    number: object,
    where: CallerCell | Callable[[], CallerCell | None] | None,
    link: AgentLink | None = None,
) -> Value:
    """Dial ``number`` at most once for this cell; recalculation shows when it was dialled.

    ``where`` is the formula's cell, or a function giving it (read from Excel only here,
    so a failure to read it becomes text in the cell like any other).
    """
    cell = where() if callable(where) else where
    if cell is None:
        return str(Text("PZ_CALL works in a cell only", "PZ_CALL работает только в ячейке"))
    if cell.cells != 1:
        return str(
            Text(
                "PZ_CALL must be in a single cell, not an array formula",
                "PZ_CALL — только в одной ячейке, не формула массива",
            )
        )
    key = _key(number)
    # Dialled as typed (the connector passes numbers on the way users write them);
    # the once-key uses the normalised number, so reformatting the cell never redials.
    body = {"number": cell_text(number), "once_key": once_key(cell, key)}
    try:
        result = (link or LINK).post("/call", body, workbook=cell.path or None)
    except _AgentDown as exc:
        if exc.text is AGENT_SLOW:
            # The agent records the key before dialling, so the dial is under way;
            # the next recalculation shows "called at …".
            return str(Text("calling… (no reply yet)", "звоним… (ответа пока нет)"))
        raise
    return format_call_result(result)
