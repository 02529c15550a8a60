"""The contacts index kept on disk (issue 14, target 4): a restart routes from it without
parsing the sheet; a changed book, another area code, program version or book, and a
damaged file are all noticed. Real workbooks, real files, our real loader (counted, not
replaced), the agent on our test connector."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from pz_excel.agent.lifecycle import Agent, AgentConfig
from pz_excel.books.contacts_append import ContactAppend
from pz_excel.books.filebook import FileBook
from pz_excel.books.template import write_template
from pz_excel.crm.contacts import ContactIndex, ContactsWatcher, load_index
from pz_excel.crm.routing import decide
from pz_excel.crm.schema import CallRow
from tests.conftest import wait_until

MANAGERS = [("Anna Smirnova", "101"), ("Boris Ivanov", "102")]
SPECIAL = [
    ("Ivan Petrov", "+7 (343) 011-22-33", "101", "Uralmash"),
    ("Olga Sidorova", "8 912 555 44 33; 8 912 555 44 34", "boris ivanov", "Rosa"),  # two
    ("Zero Ext", "0101", "102", "Desk"),  # a slot kept as text (leading zero)
    ("Local Shop", "234-56-78", "102", "Corner"),  # a number only with area code 343
    ("Bad Phone", "12", "101", ""),  # a warning
    ("Twin", "+7 343 011-22-33", "102", ""),  # a duplicate: a warning, row 1 wins
]
OWNERS = ["101", "Anna Smirnova", "Boris Ivanov", "102", ""]


def contacts(n: int = 1500, first_owner: str = "101") -> list[tuple[str, str, str, str]]:
    rows = [(SPECIAL[0][0], SPECIAL[0][1], first_owner, SPECIAL[0][3]), *SPECIAL[1:]]
    rows += [(f"Client {i}", f"7922{i:07d}", OWNERS[i % len(OWNERS)], f"Co {i % 97}")
             for i in range(n)]
    return rows


def make_book(path: Path, **kw) -> Path:
    return write_template(path, contacts=contacts(**kw), managers=MANAGERS, force=True)


class CountingLoader:
    """Our real ``load_index``, counted: how a test sees that a start did not parse."""

    def __init__(self, area_code: str = ""):
        self.area_code = area_code
        self.calls = 0

    def __call__(self, path: Path) -> ContactIndex:
        self.calls += 1
        return load_index(path, area_code=self.area_code)


def watcher(book: Path, store: Path, loader: CountingLoader, start: bool = False,
            ) -> ContactsWatcher:
    return ContactsWatcher(book, loader=loader, store=store, area_code=loader.area_code,
                           start=start, interval=0.05, settle=0.05)


@pytest.fixture
def book(tmp_path) -> Path:
    return make_book(tmp_path / "crm.xlsx")


@pytest.fixture
def store(tmp_path) -> Path:
    return tmp_path / "journal.sqlite.contacts-index"


def stored_once(book: Path, store: Path, area_code: str = "") -> ContactIndex:
    first = watcher(book, store, CountingLoader(area_code))
    assert first.started_from == "sheet" and first.save_pending() and store.exists()
    assert not list(store.parent.glob("*.tmp"))  # written atomically, nothing left over
    return first.current


def routes(index: ContactIndex, caller: str) -> str:
    return decide("1", caller, index, fallback="999").to


def assert_same(built: ContactIndex, stored: ContactIndex) -> None:
    assert (len(stored), stored.phone_count) == (len(built), built.phone_count)
    assert list(stored.contacts) == list(built.contacts)
    assert stored.contacts[3:7] == built.contacts[3:7]
    for contact in built.contacts:
        for key in contact.phone.split(", "):
            assert stored.lookup_key(key) == built.lookup_key(key)
    for caller in ("+7 343 011 22 33", "89125554434", "0101", "2345678", "79990000000",
                   "7922" + "0" * 7, "79220001499"):
        assert stored.lookup(caller) == built.lookup(caller)
        assert routes(stored, caller) == routes(built, caller)
    assert stored.managers == built.managers
    assert stored.managers.names == built.managers.names
    assert stored.warnings == built.warnings and len(built.warnings) >= 2
    assert (stored.fingerprint, stored.area_code) == (built.fingerprint, built.area_code)


# ------------------------------------------------------------------ a fresh start


def test_a_restart_routes_from_the_stored_index_without_parsing(book, store):
    built = stored_once(book, store)
    loader = CountingLoader()
    again = watcher(book, store, loader)
    assert again.started_from == "store" and again.store_problem is None
    assert loader.calls == 0  # the sheet was not parsed
    assert_same(built, again.current)
    assert routes(again.current, "+7 912 555 44 34") == "102"  # owner by name, 2nd number
    assert again.name_and_owner("0101") == ("Zero Ext", "102")
    assert again.save_pending() is False  # nothing built: nothing to write


def test_the_agent_answers_from_the_stored_index_on_its_second_start(book, server, tmp_path):
    journal = tmp_path / "agent.sqlite"

    def start() -> Agent:
        cfg = AgentConfig(workbook=book, server=server.url, phone="101", journal=journal,
                          save_interval=0.1, lang="en")
        agent = Agent(cfg).start()
        wait_until(lambda: agent.client.state.kind == "connected", 10, "agent connected")
        return agent

    first = start()
    try:
        assert first.watcher.started_from == "sheet"
        wait_until(lambda: first.watcher.saves == 1, 20, "the index stored after the build")
    finally:
        first.stop()
    assert Path(f"{journal}.contacts-index").exists()
    second = start()
    try:
        assert second.watcher.started_from == "store" and second.watcher.reloads == 0
        server.generate(1, {"From": "+79125554433", "CallID": "7001"})
        wait_until(lambda: server.transfers.get("7001") == "102", 5, "routed by the owner")
    finally:
        second.stop()


# ------------------------------------------------------------------ a changed book


def test_a_new_owner_is_routed_once_the_stale_index_is_rebuilt(book, store):
    before = stored_once(book, store)
    assert routes(before, "73430112233") == "101"
    make_book(book, first_owner="Boris Ivanov")  # a new book: the first contact's owner
    # In between: the start routes from the stored index (as before the edit) ...
    loader = CountingLoader()
    stale = watcher(book, store, loader)
    assert stale.started_from == "stale store" and loader.calls == 0
    assert routes(stale.current, "73430112233") == "101"
    # ... and the thread's first work is the re-read: the new owner from the swap on.
    running = watcher(book, store, loader, start=True)
    try:
        wait_until(lambda: running.reloads == 1, 20, "the stale index rebuilt")
        assert routes(running.current, "73430112233") == "102"
        wait_until(lambda: running.saves == 1, 20, "the rebuilt index stored")
    finally:
        running.stop()
    fresh = watcher(book, store, CountingLoader())
    assert fresh.started_from == "store"
    assert routes(fresh.current, "73430112233") == "102"


def test_a_contact_added_at_the_zip_level_makes_the_store_stale(book, store):
    stored_once(book, store)
    FileBook(book).write_parts(ContactAppend("Pyotr New", "+7 922 555-00-11", "102"))
    loader = CountingLoader()
    stale = watcher(book, store, loader)
    assert stale.started_from == "stale store"
    assert stale.current.lookup("79225550011") is None  # not in the old index
    assert stale.refresh() is None and loader.calls == 1  # the re-read the thread does
    assert routes(stale.current, "89225550011") == "102"
    assert stale.save_pending()
    assert watcher(book, store, CountingLoader()).started_from == "store"


def test_our_own_calls_saves_leave_the_stored_index_valid(book, store):
    """The agent's Calls rows change the file, not the contacts parts: still "store"."""
    stored_once(book, store)
    before = book.read_bytes()
    FileBook(book).write_calls([CallRow("9001", "incoming", "answered", "73430112233")])
    assert book.read_bytes() != before
    assert watcher(book, store, CountingLoader()).started_from == "store"


# ------------------------------------------------------------------ not to be trusted


def _rewrite_header(path: Path, **changes: object) -> None:
    """Change header fields keeping the length and a valid checksum: only the check of
    that field can refuse the file."""
    data = path.read_bytes()
    size = struct.unpack("<8sQ", data[:16])[1]
    header = json.loads(data[16 : 16 + size])
    header.update(changes)
    text = json.dumps(header, ensure_ascii=False).encode()
    assert len(text) <= size
    body = data[:16] + text + b" " * (size - len(text)) + data[16 + size : -4]
    path.write_bytes(body + struct.pack("<I", zlib.crc32(body)))


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x20  # inside the records
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
                  "damaged"),
    "one byte changed": (_flip, "checksum"),
    "empty": (lambda p: p.write_bytes(b""), "not an index file"),
    "garbage": (lambda p: p.write_bytes(b"PK\x03\x04" + b"x" * 5000), "not an index file"),
    "bad header": (lambda p: p.write_bytes(p.read_bytes()[:20]), "unreadable"),
    "another version": (lambda p: _rewrite_header(p, code="0" * 32), "program version"),
    "another book": (lambda p: _rewrite_header(p, source="/elsewhere/crm.xlsx"),
                     "another workbook"),
    "another format": (lambda p: _rewrite_header(p, byteorder="middle"), "program version"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_file_that_cannot_be_trusted_is_ignored_and_rebuilt(book, store, damage):
    built = stored_once(book, store)
    spoil, reason = DAMAGE[damage]
    spoil(store)
    loader = CountingLoader()
    w = watcher(book, store, loader)
    assert w.started_from == "sheet" and loader.calls == 1
    assert reason in w.store_problem.en and w.store_problem.ru
    assert_same(built, w.current)
    assert w.save_pending()  # replaced by a good one
    assert watcher(book, store, CountingLoader()).started_from == "store"


def test_the_store_of_another_book_is_not_used(book, store, tmp_path):
    stored_once(book, store)
    copy = shutil.copy(book, tmp_path / "copy.xlsx")  # the same contacts, another book
    w = watcher(Path(copy), store, CountingLoader())
    assert w.started_from == "sheet" and "another workbook" in w.store_problem.en


def test_another_area_code_invalidates_the_stored_index(book, store):
    without = stored_once(book, store)
    assert without.lookup("2345678") is None  # 7 digits: no city to complete them
    loader = CountingLoader(area_code="343")
    w = watcher(book, store, loader)
    assert w.started_from == "sheet" and loader.calls == 1
    assert "area code" in w.store_problem.en
    assert routes(w.current, "2345678") == "102"  # the local number, now the city's
    assert w.save_pending()
    again = watcher(book, store, CountingLoader(area_code="343"))
    assert again.started_from == "store" and routes(again.current, "2345678") == "102"


def test_a_book_without_contacts_is_the_users_error_whatever_the_store(book, store, tmp_path):
    from openpyxl import Workbook

    from pz_excel.i18n import UserError

    stored_once(book, store)
    wb = Workbook()
    wb.active.title = "Other"
    wb.save(book)
    with pytest.raises(UserError, match="Contacts"):
        watcher(book, store, CountingLoader())


def test_a_save_cut_short_by_a_stop_leaves_nothing_behind(book, store):
    from pz_excel.crm.index_store import IndexStore

    index = load_index(book)
    saver = IndexStore(store, book)
    assert saver.save(index, cancelled=lambda: True) is False
    assert list(store.parent.glob(store.name + "*")) == []
    assert saver.save(index) and saver.load(index.fingerprint).current
