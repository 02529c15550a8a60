"""What a team server is told (``pz-excel team run``), and the desktop agent's
configuration it becomes on the leader: the same assembly, set up for the team."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pz_excel import paths
from pz_excel.agent import sqldb
from pz_excel.agent.lifecycle import AgentConfig
from pz_excel.books.template import write_calls_book
from pz_excel.connector.client import TlsOptions
from pz_excel.i18n import Text, UserError, current_lang

#: The client GID both team servers log in with (one connection per GID: PROTOCOL.md §1).
DEFAULT_GUID = "pz-team"
#: Every event type, for every extension (PROTOCOL.md §1, BroadcastEventsMask).
ALL_EVENTS = 127
#: Where the team API listens by default (team/api.py).
DEFAULT_LISTEN = "127.0.0.1:10190"


@dataclass
class TeamConfig:
    server: str
    db: str  # an SQLite path or a postgresql:// DSN
    contacts: Path  # the shared CRM book: only read
    team_book: Path  # Calls + Dashboard, written by the leader alone
    guid: str = DEFAULT_GUID
    password: str = ""
    client_type: str = "excel"
    tls: TlsOptions | None = None
    area_code: str = ""
    fallback: str = ""
    api_address: str = ""  # told to standbys and desktop agents through team_leader
    lang: str | None = None
    save_interval: float = 1.0
    freeze_gc: bool = False  # AgentConfig.freeze_gc: set by ``team run``, its own process

    def __post_init__(self) -> None:
        self.db = str(self.db)
        if not sqldb.is_dsn(self.db):
            self.db = str(Path(self.db).expanduser().resolve())
        self.contacts = Path(self.contacts).expanduser().resolve()
        self.team_book = Path(self.team_book).expanduser().resolve()

    def check(self) -> None:
        """What must hold before this server waits or leads (said at once, not at failover)."""
        if not self.contacts.is_file():
            raise UserError(Text(f"contacts workbook not found: {self.contacts}",
                                 f"книга контактов не найдена: {self.contacts}"))
        if self.contacts == self.team_book:
            raise UserError(Text(
                "the team book must be its own file, not the contacts workbook",
                "книга команды должна быть отдельным файлом, а не книгой контактов"))
        if self.team_book.suffix.lower() not in (".xlsx", ".xlsm"):
            raise UserError(Text(f"{self.team_book.name}: the team book must be an .xlsx file",
                                 f"{self.team_book.name}: книга команды должна быть .xlsx"))
        self.agent_config()  # a bad connector address is a user error now

    def agent_config(self) -> AgentConfig:
        """The desktop agent's assembly, for the team: no extension of its own, every
        extension's events, the team database as its journal, nobody's desktop agent."""
        return AgentConfig(
            workbook=self.team_book,
            server=self.server,
            phone="",
            password=self.password,
            client_type=self.client_type,
            guid=self.guid,
            fallback=self.fallback,
            area_code=self.area_code,
            tls=self.tls,
            journal=self.db,
            save_interval=self.save_interval,
            lang=self.lang,
            contacts=self.contacts,
            broadcast_mask=ALL_EVENTS,
            desktop=False,
            index_store=self.index_store,
            freeze_gc=self.freeze_gc,
        )

    @property
    def index_store(self) -> Path:
        """The shared book's contacts index, kept on this machine between leaderships: a
        standby warms it while it waits, so taking over with a million contacts costs a
        load (under a second), not a parse (crm/index_store.py checks it against the book)."""
        key = hashlib.sha256(str(self.contacts).encode("utf-8")).hexdigest()[:12]
        return paths.home() / "team" / f"contacts-{key}.contacts-index"


def ensure_team_book(path: Path, lang: str | None = None) -> bool:
    """A new team book when there is none: the CRM template's Calls sheet alone (the
    leader adds the Dashboard at once) — a book we create, never a user's. True if made.
    An existing book is left alone: the agent writes it at the zip level."""
    if path.exists():
        return False
    try:
        write_calls_book(path, (), lang or current_lang())
    except UserError:
        if path.exists():  # the other server made it meanwhile: theirs stands
            return False
        raise
    return True
