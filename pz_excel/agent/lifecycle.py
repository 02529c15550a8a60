"""The call agent: one per user, extension and workbook.

It holds the one connection to the connector, answers transfer requests from the
contacts' Owner column, keeps the Calls sheet, and serves the local API to Excel and the
CLI. The order of work for every event is fixed: **journal first**, then act — so a crash
at any point loses nothing that was received, and a restart writes what was pending.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from pz_excel import paths
from pz_excel.agent import dashboard, notify
from pz_excel.agent.api import LocalApi, running_agents
from pz_excel.agent.calllog import CallMapper, is_new_call
from pz_excel.agent.eventpath import EventPath
from pz_excel.agent.handlers import ApiHandlers, empty_contacts_warning
from pz_excel.agent.inbox import Inbox
from pz_excel.agent.journal import Journal
from pz_excel.agent.sqldb import storage_errors
from pz_excel.agent.teamlink import TeamLink
from pz_excel.agent.teamreport import TeamReporter
from pz_excel.agent.writer import flush_dirty
from pz_excel.books import BookLocked, BookUnpatchable, CallsBook
from pz_excel.books.bookproc import BookProcessGone, FileBookProcess
from pz_excel.books.switch import SwitchingBook
from pz_excel.connector.client import ConnectionState, ConnectorClient, TlsOptions
from pz_excel.crm import phones
from pz_excel.crm.contacts import ContactIndex, ContactsWatcher, load_index
from pz_excel.crm.routing import Decision, decide
from pz_excel.crm.schema import CallRow
from pz_excel.i18n import Text, UserError
from pz_excel.locks import AlreadyRunning, InstanceLock
from pz_excel.protocol import codec as protocol

log = logging.getLogger("pz_excel.agent.lifecycle")

TEAM_ROUTES = Text("left to the team server, which routes transfers",
                   "оставлен командному серверу: переводы распределяет он")



@dataclass
class AgentConfig:
    workbook: Path
    server: str
    phone: str
    password: str = ""
    client_type: str = "excel"
    guid: str = ""
    fallback: str = ""
    area_code: str = ""  # digits: local numbers are this city's (crm/phones.py)
    tls: TlsOptions | None = None
    #: An SQLite file or a ``postgresql://`` DSN (the team database).
    journal: Path | str | None = None
    save_interval: float = 1.0
    lang: str | None = None
    header_login: bool = False
    dashboard_interval: float = 30.0  # a change shows on the Dashboard within a minute
    #: The journal's log and stored messages are kept this many days (call rows always).
    keep_days: int = 180
    team: TeamLink | None = None  # a team server routes transfers; we report to it
    #: The book the contacts are read from when it is not ``workbook`` (the team server:
    #: its own book holds Calls and Dashboard, the shared CRM book is only read).
    contacts: Path | None = None
    #: Event types the connector sends for every extension (PROTOCOL.md §1); the team: 127.
    broadcast_mask: int = 0
    #: False for the team server: no local API (``running_agents``/``pz-excel status`` do
    #: not list it as someone's agent) and no per-computer agent locks — its leadership
    #: lock (team/leader.py) is what keeps it to one connection, across computers.
    desktop: bool = True
    #: Where the contacts index is kept between runs (default: beside the journal file).
    index_store: Path | None = None
    #: For a process that is only this agent (``run``, ``team run``): what is alive once
    #: the contacts are loaded is frozen out of the garbage collector's full passes. Such a
    #: pass walks every live object (modules, code, the libraries') holding the interpreter
    #: lock: 25 ms measured, a caller's answer stalled behind it. Not for a process that
    #: hosts agents among other things (tests): its garbage would stay.
    freeze_gc: bool = False
    settings: protocol.ConnectSettings = field(init=False)

    def __post_init__(self) -> None:
        self.workbook = Path(self.workbook).expanduser().resolve()
        if self.contacts is not None:
            self.contacts = Path(self.contacts).expanduser().resolve()
        try:
            self.settings = protocol.ConnectSettings(
                server=self.server,
                phone=self.phone,
                password=self.password,
                client_type=self.client_type,
                guid=self.guid,
                broadcast_mask=self.broadcast_mask,
            )
            self.settings.url  # noqa: B018 - validates the address now, not at first connect
        except protocol.ProtocolError as exc:
            raise UserError(
                Text(f"bad connector settings: {exc}", f"неверные настройки коннектора: {exc}")
            ) from exc
        if self.journal is None:
            self.journal = paths.journal_path(self.phone, self.workbook)


class Agent(ApiHandlers):
    """Wires connector → journal → routing / call log → workbook, plus the local API."""

    def __init__(self, config: AgentConfig, *, book_factory: Callable[[], Any] | None = None):
        self.config = config
        self._book_factory = book_factory
        self._lock = InstanceLock(paths.agents_dir() / f"{self.key}.lock")
        self._guid_lock: InstanceLock | None = None  # taken at start: see start()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self._once_lock = threading.Lock()
        self._last_once_dial = 0.0
        self.journal: Journal | None = None
        self.watcher: ContactsWatcher | None = None
        self.client: ConnectorClient | None = None
        self.api: LocalApi | None = None
        self.book: CallsBook | None = None
        self.book_error: Text | None = None
        self.last_event: dict[str, Any] | None = None
        self.decisions: list[Decision] = []
        self.on_decision: Callable[[Decision], None] | None = None
        self.on_state: Callable[[ConnectionState], None] | None = None
        self.on_rows_written: Callable[[int], None] | None = None
        self.rows_written = 0
        self.last_pop = ""
        self._calls_changed = False
        self._next_dashboard = 0.0
        self._next_prune = 0.0
        self._book_io = threading.Lock()  # one writer of the book at a time
        self.inbox = Inbox(on_stored=self._stored_late,
                           on_failing=lambda text: notify.notify("Простые Звонки", str(text)))
        self.events: EventPath | None = None
        self.reporter: TeamReporter | None = None

    @property
    def key(self) -> str:
        return paths.agent_key(self.config.phone, self.config.workbook)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Agent:
        cfg = self.config
        if not cfg.workbook.exists():
            raise UserError(
                Text(f"workbook not found: {cfg.workbook}", f"книга не найдена: {cfg.workbook}")
            )
        try:
            if cfg.desktop:
                self._lock.acquire()
        except AlreadyRunning:
            other = next((a for a in running_agents() if a.key == self.key), None)
            who = f" (pid {other.pid}, API port {other.port})" if other else ""
            raise UserError(
                Text(
                    f"an agent for extension {cfg.phone} and {cfg.workbook.name} is already "
                    f"running{who}; stop it first (pz-excel status / Disconnect)",
                    f"агент для добавочного {cfg.phone} и книги {cfg.workbook.name} уже "
                    f"запущен{who}; сначала остановите его (pz-excel status / «Отключить»)",
                )
            ) from None
        try:
            if cfg.desktop:
                self._take_connector_identity()
            self._start_parts()
        except BaseException:
            self.stop()
            raise
        if cfg.freeze_gc:
            gc.freeze()  # what start-up made lives as long as we do (see AgentConfig)
        return self

    def _take_connector_identity(self) -> None:
        """One agent per connector address and client GUID on this computer: a second one
        would be dropped by the connector with 4009 (or drop the first), so it is refused
        here, naming the first."""
        settings = self.config.settings
        url, guid = settings.url, settings.client_guid
        lock = InstanceLock(paths.agents_dir() / f"{paths.connector_key(url, guid)}.lock")
        try:
            lock.acquire()
        except AlreadyRunning:
            other = next(
                (a for a in running_agents() if a.server == url and (a.guid or a.phone) == guid),
                None,
            )
            where_en = f" for {other.workbook} (pid {other.pid})" if other else ""
            where_ru = f" для книги {other.workbook} (pid {other.pid})" if other else ""
            raise UserError(
                Text(
                    f"another agent is already connected to {url} as client GUID {guid}"
                    f"{where_en}: the connector keeps one connection per GUID and would drop "
                    "one of them (4009). Stop it first (pz-excel status -w BOOK / Disconnect), "
                    "or give this one its own --guid",
                    f"другой агент уже подключён к {url} с GUID клиента {guid}{where_ru}: "
                    "коннектор держит одно подключение на GUID и отключил бы один из них "
                    "(4009). Сначала остановите его (pz-excel status -w КНИГА / «Отключить») "
                    "или задайте этому свой --guid",
                )
            ) from None
        self._guid_lock = lock

    def _start_parts(self) -> None:
        cfg = self.config
        self.journal = Journal(
            cfg.journal, normalize=functools.partial(phones.normalize, area_code=cfg.area_code)
        )
        self.book = self._open_book()  # a file book's process reads it beside the contacts
        # Contacts first: a bad workbook is a user error before we touch the network.
        self.watcher = ContactsWatcher(
            cfg.contacts or cfg.workbook,
            on_reload=self._on_contacts_reload,
            loader=functools.partial(load_index, area_code=cfg.area_code),
            # The index kept next to the journal: a restart routes without parsing the sheet
            # (crm/index_store.py); a team database journal (a DSN) has no folder: the team
            # server names one (index_store).
            store=cfg.index_store or (None if "://" in str(cfg.journal)
                                      else Path(f"{cfg.journal}.contacts-index")),
            area_code=cfg.area_code,
        )
        # The call-row mapping is given the contacts (the crm layer), not a callback into
        # the agent: journal → calllog → contacts, one way down.
        self.mapper = CallMapper(lookup=self.watcher.name_and_owner)
        self._prepare_book()
        self.client = ConnectorClient(
            cfg.settings,
            tls=cfg.tls,
            header_login=cfg.header_login,
            on_decode_error=self._on_decode_error,
        )
        self.events = EventPath(self.journal, self.inbox, apply=self._apply_event,
                                decide=self._decide_transfer, send=self._send_transfer,
                                answered=self._transfer_answered)
        self.client.on_frame(self.events.on_frame)  # stored on the reading thread, first
        self.client.on_idle(self.events.flush)  # messages read back to back: one commit
        self.client.on_state(self._on_client_state)
        self._writer = threading.Thread(target=self._writer_loop, name="pz-writer", daemon=True)
        self._writer.start()
        if cfg.desktop:  # the team server is nobody's desktop agent: not listed
            self.api = LocalApi(self._routes())
            self.api.start(
                key=self.key,
                phone=cfg.phone,
                workbook=str(cfg.workbook),
                server=cfg.settings.url,
                journal=str(cfg.journal),
                guid=cfg.settings.client_guid,
            )
        self.journal.record("state", {"agent": "started", "workbook": str(cfg.workbook)})
        self.events.start()  # what a killed run stored but never applied goes in first
        if cfg.team is not None:  # our events go to the team server too (teamreport.py)
            self.reporter = TeamReporter(self.journal, cfg.team.copy(), cfg.phone).start()
        self.client.start()

    def stop(self) -> None:
        """Clean stop: connection closed, pending rows written if the book allows it."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self.client is not None:
            self.client.stop()
        if self.events is not None:
            self.events.stop()  # what is still queued is in the journal: next start
        if self.reporter is not None:
            self.reporter.stop()  # what is not reported yet waits in the journal
        self._wake.set()
        if self._writer is not None:
            self._writer.join(timeout=30)
        if self.journal is not None and self.book is not None:
            try:
                self._flush()
                self.refresh_dashboard(force=self._calls_changed)
            except (BookLocked, BookUnpatchable):
                pass  # rows stay in the journal; the next start writes them
            except Exception:
                log.exception("final write at stop failed; rows stay in the journal")
        if self.api is not None:
            self.api.stop()
        if self.watcher is not None:
            self.watcher.stop()
        if self.book is not None:
            self.book.close()
        if self.journal is not None:
            journal = self.journal
            self.inbox.retry()
            self.inbox.store(lambda: journal.record("state", {"agent": "stopped"}))
            if self.inbox.waiting:
                log.error("%s", Text(
                    f"stopping with {self.inbox.waiting} events not saved: {self.inbox.error}",
                    f"остановка: не сохранено событий: {self.inbox.waiting} — "
                    f"{self.inbox.error}"))
            journal.close()
        if self._guid_lock is not None:
            self._guid_lock.release()
        self._lock.release()

    @property
    def stopped(self) -> bool:
        """True once stop() began (Ctrl+C, POST /stop from the ribbon's Disconnect)."""
        return self._stopping.is_set()

    # ------------------------------------------------------------------ pieces

    def _lang(self) -> str:
        if self.config.lang:
            return self.config.lang
        from pz_excel.i18n import current_lang

        return current_lang()

    def _open_book(self) -> CallsBook:
        if self._book_factory is not None:
            return self._book_factory()
        path = self.config.workbook
        # The file is written by a process of its own (bookproc: a save must not hold the
        # interpreter lock the caller's answer needs).
        book = SwitchingBook(path, lambda: FileBookProcess(path))
        book.file  # noqa: B018 - that process starts now and reads the book beside our start
        return book

    def _prepare_book(self) -> None:
        """A missing Calls sheet is added now, before we connect: the user sees it at once
        and the first call's save is an ordinary one."""
        assert self.book is not None
        try:
            self.book.prepare()
        except (BookLocked, BookUnpatchable) as exc:  # rows wait in the journal; said once
            log.warning("%s", exc.text if hasattr(exc, "text") else exc)
        except UserError:
            raise  # wrong columns in Calls: the user's to fix, said before connecting
        except Exception:  # the writer tries again with the first rows
            log.exception("preparing the Calls sheet failed; rows stay in the journal")

    @property
    def index(self) -> ContactIndex:
        assert self.watcher is not None
        return self.watcher.current

    def _on_contacts_reload(self, index: ContactIndex, error: Text | None) -> None:
        if error is not None:
            log.warning("%s", Text(
                f"contacts not reloaded, the previous ones stay in use: {error.en}",
                f"контакты не перечитаны, используются прежние: {error.ru}"))
        else:
            log.info(
                "%s", Text(f"contacts loaded: {len(index)}", f"контакты загружены: {len(index)}")
            )
            empty = empty_contacts_warning(len(index), self.config.fallback)
            if empty is not None:
                log.warning("%s", empty)
            if self.config.freeze_gc:
                gc.freeze()  # the new index is long-lived: out of the full passes
        for warning in index.warnings[:20] if error is None else ():
            log.warning("%s", warning)

    def _on_decode_error(self, err: protocol.DecodeError) -> None:
        journal = self.journal
        if journal is not None:  # the whole message is kept, as received, for a later look
            def keep() -> None:
                seq = journal.record_frame(err.raw or err.excerpt)
                journal.frame_applied(seq)
                journal.record("decode-error", {"reason": err.reason, "frame": seq})

            self.inbox.store(keep)
        log.warning("undecodable frame ignored: %s", err.reason)

    def _on_client_state(self, state: ConnectionState) -> None:
        journal = self.journal
        if journal is not None and not self._stopping.is_set():
            payload = {"kind": state.kind, "text": state.text.en, "retry_in": state.retry_in}
            self.inbox.store(lambda: journal.record("state", payload))
        log.info("%s", state.text)
        if self.on_state is not None:
            self.on_state(state)

    # ------------------------------------------------------------------ the event path

    def _seen(self, event: protocol.Event) -> None:
        self.last_event = {
            "type": event.type,
            "name": str(event.name),
            "call_id": event.call_id,
            "from": event.from_,
            "to": event.to,
            "at": datetime.now().isoformat(timespec="seconds"),
        }

    def _apply_event(self, event: protocol.Event, frame: int | None) -> None:
        """``pz-events``: the event and the call row it changes, one transaction (they can
        never disagree); when the journal cannot be written, the store waits in the inbox
        (in order) and the screen pop does not wait for the disk."""
        journal = self.journal
        assert journal is not None
        self._seen(event)
        stored, row = self.inbox.store(
            lambda: journal.apply_event(event, self.mapper, reused=is_new_call, frame=frame))
        if row is not None:
            self._wake.set()
        if (row is not None or not stored) and event.type == protocol.EventType.INCOMING \
                and self.config.phone and event.to == self.config.phone:  # team: no pop
            self._screen_pop(event)

    def _decide_transfer(self, event: protocol.Event) -> tuple[Decision, tuple[str, dict]]:
        """On the reading thread: whose call it is (a few dictionary lookups), and the
        journal entry that records it with the request, in the message's one commit."""
        if self.config.team is not None:  # the team server routes: no answer from here
            decision = Decision(event.call_id, event.from_, "", TEAM_ROUTES, None, "team-server")
            return decision, ("decision", {"caller": decision.caller, "to": "",
                                           "rule": decision.rule, "reason": TEAM_ROUTES.en,
                                           "team": self.config.team.url})
        decision = decide(
            event.call_id,
            event.from_,
            self.index,
            fallback=self.config.fallback,
            me=self.config.phone,
        )
        entry = ("decision", {"caller": decision.caller, "to": decision.to,
                              "rule": decision.rule, "reason": decision.reason.en})
        return decision, entry

    def _send_transfer(self, event: protocol.Event, decision: Decision) -> Any:
        """On the reading thread, right after the commit: the answer goes out (queued on
        the connection, never blocking)."""
        assert self.client is not None
        if decision.rule == "team-server":
            return None  # no Transfer at all: the team server answers this request
        return self.client.transfer_async(event.call_id, decision.to)

    def _transfer_answered(self, event: protocol.Event, decision: Decision, sent: Any) -> None:
        """``pz-transfers``: what is said about a transfer once it is on its way (and the
        status's last event: not on the reading thread, where a caller waits)."""
        self._seen(event)
        log.info(
            "%s",
            Text(
                f"transfer {event.call_id} from {event.from_ or '?'} → "
                f"{decision.to or 'declined'}: {decision.reason.en}",
                f"перевод {event.call_id} от {event.from_ or '?'} → "
                f"{decision.to or 'отказ'}: {decision.reason.ru}",
            ),
        )
        self.decisions.append(decision)
        del self.decisions[:-200]
        if sent is not None:  # None: left to the team server, nothing was sent
            sent.add_done_callback(lambda f: self._log_response("transfer", event.call_id, f))
        if self.on_decision is not None:
            self.on_decision(decision)

    def _log_response(self, what: str, call_id: str, future: Any) -> None:
        if self.journal is None or self._stopping.is_set():
            return
        journal = self.journal
        try:
            resp = future.result()
            self.inbox.store(lambda: journal.record(
                "response", {"request": what, "code": resp.code}, call_id=call_id))
        except Exception as exc:  # noqa: BLE001 - a lost answer is logged, not fatal
            failed = {"request": what, "error": str(exc)}
            self.inbox.store(lambda: journal.record("response", failed, call_id=call_id))

    def _screen_pop(self, event: protocol.Event) -> None:
        """ "Incoming: name — company (owner)": a toast where there is one, the Excel status
        bar and the caller's Contacts row when the book is open live, and the log."""
        contact = self.index.lookup(event.from_)
        details = None
        if contact is not None:
            details = {"name": contact.name, "company": contact.company, "owner": contact.owner}
        text = str(notify.screen_pop_text(event.from_, details))
        log.info("%s", text)
        self.last_pop = text
        # Off the receive thread: a slow desktop or a busy Excel must not delay events.
        threading.Thread(
            target=self._show_pop,
            args=(text, contact.row if contact else None),
            name="pz-pop",
            daemon=True,
        ).start()

    def _show_pop(self, text: str, contact_row: int | None) -> None:
        notify.notify("Простые Звонки", text)
        assert self.book is not None
        try:
            self.book.screen_pop(text, contact_row)
        except Exception as exc:  # noqa: BLE001 - a pop-up must never stop the log
            log.debug("screen pop failed: %s", exc)

    def _stored_late(self, result: object) -> None:
        """A store that waited in the inbox went in: a changed call row goes to the book."""
        if isinstance(result, CallRow):
            self._wake.set()

    # ------------------------------------------------------------------ writing rows

    def _flush(self) -> int:
        assert self.journal is not None and self.book is not None
        with self._book_io:
            written = flush_dirty(self.journal, self.book)
        if written:
            self.rows_written += written
            self._calls_changed = True
            if self.on_rows_written is not None:
                self.on_rows_written(written)
        if self.book.take_recreated():
            again = self.journal.mark_all_unwritten()
            if again:
                log.warning("%s", Text(
                    f"the Calls sheet was missing; writing all {again} calls of the journal back",
                    f"листа звонков не было; записываем обратно все звонки журнала ({again})",
                ))
                self._wake.set()
        for call_id in self.book.take_handed_back():
            # Excel closed without saving rows written live: dirty again, so the file gets them
            row = self.journal.get_call(call_id)
            if row is not None:
                self.journal.upsert_call(row)
                self._wake.set()
        return written

    def refresh_dashboard(self, force: bool = False) -> bool:
        """Rewrite the Dashboard sheet from the journal, when calls changed, at most every
        ``dashboard_interval`` seconds. Figures are added up in SQL and the sheet, drawing
        and charts are written at the zip level, so its cost does not grow with the book.
        While the book is open in Excel the file is Excel's: the sheet is brought up to
        date within ``dashboard_interval`` of Excel closing it."""
        assert self.journal is not None and self.book is not None
        now = time.monotonic()
        if not force and (not self._calls_changed or now < self._next_dashboard):
            return False
        self._next_dashboard = now + self.config.dashboard_interval
        fig = dashboard.figures(self.journal, date.today(), self.index.owner_name)
        with self._book_io:
            done = self.book.write_parts(dashboard.writer(fig))
        if done:
            self._calls_changed = False
        return done

    def _keep_journal_small(self) -> None:
        """Once a day (and at start): the retention policy, ``AgentConfig.keep_days``."""
        assert self.journal is not None
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + 24 * 3600
        gone = self.journal.prune(datetime.now() - timedelta(days=self.config.keep_days))
        if gone:
            log.info("%s", Text(
                f"journal: {gone} entries older than {self.config.keep_days} days removed",
                f"журнал: удалено записей старше {self.config.keep_days} дней: {gone}"))

    def _writer_loop(self) -> None:
        """At most one save per ``save_interval``: rows of a burst go in one batch."""
        interval = self.config.save_interval
        locked_since: float | None = None
        while not self._stopping.is_set():
            self._wake.wait(timeout=interval if locked_since is None else 2.0)
            if self._stopping.is_set():
                break
            self._wake.clear()
            started = time.monotonic()
            try:
                self.inbox.retry()
                self._flush()
                self.refresh_dashboard()
                self._keep_journal_small()
                if locked_since is not None:
                    log.info(
                        "%s",
                        Text(
                            "workbook writable again: pending rows written",
                            "книга снова доступна: ожидавшие строки записаны",
                        ),
                    )
                locked_since = None
                self.book_error = None
            except (BookLocked, BookUnpatchable) as exc:
                if locked_since is None:
                    log.warning("%s", exc.text if hasattr(exc, "text") else exc)
                locked_since = locked_since or time.monotonic()
                self.book_error = getattr(exc, "text", Text(str(exc), str(exc)))
            except UserError as exc:
                self.book_error = exc.text
                log.error("%s", exc.text)
            except BookProcessGone as exc:  # the next save starts a new one; rows wait
                log.warning("%s", Text(f"{exc}", "процесс записи книги завершился; строки "
                                       "ждут в журнале и будут записаны новым процессом"))
            except storage_errors() as exc:  # the book was written, marking it failed: the
                # rows go again (by Call ID, no doubles); said once, status has the rest
                if not self.inbox.error:
                    log.warning("%s", Text(f"the journal cannot be written: {exc}",
                                           f"журнал не записывается: {exc}"))
            except Exception:
                log.exception("writing the Calls sheet failed; rows stay in the journal")
            # Pace saves: never more often than once per interval under load.
            rest = interval - (time.monotonic() - started)
            if rest > 0 and not self._stopping.is_set():
                self._stopping.wait(rest)
