"""The contacts index: contacts by phone key, managers by name, as packed records.

What ``crm/contacts.py`` builds (from a file or from rows already in memory) and routing
reads: ``ContactIndex.lookup`` is O(1) and the index is immutable once built.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pz_excel.crm import phones
from pz_excel.crm.schema import cell_text
from pz_excel.i18n import Text


@dataclass(frozen=True, slots=True)
class Contact:
    row: int  # sheet row, 1-based
    name: str
    phone: str  # the number's key (``73430112233``); several keys joined by ", "
    owner: str  # extension digits or a manager's name, as typed
    company: str


#: How a contact is stored: one UTF-8 ``bytes``, ``row␟name␟phone␟owner␟company`` (␟ is
#: U+001F, the unit separator; ``phone`` is the number's key, several joined by ", ").
#: Bytes hold no references, so the cyclic garbage collector neither tracks nor walks
#: them. As tuples, a million records cost every full collection 25–40 ms and the first
#: collection after a build ~85 ms, paid by whichever thread allocated next: often the
#: event thread, with a caller waiting. Packed they are also smaller (~100 bytes a
#: contact). ``Contact`` objects are made on demand (a lookup, an iteration); the dict key
#: is the phone key as an int (32 bytes instead of 60) unless a leading zero makes it an
#: extension like ``0101``.
Record = bytes
US = "\x1f"


def key_slot(key: str) -> int | str:
    """The dict key for a phone key (see ``Record``)."""
    return key if key[0] == "0" else int(key)


def to_contact(record: Record) -> Contact:
    row, name, phone, owner, company = record.decode().split(US)
    return Contact(int(row), name, phone, owner, company)


def record_row(record: Record) -> int:
    return int(record[: record.index(b"\x1f")])


def pack_records(
    rows: Iterable[int],
    names: Iterable[str],
    phones_: Iterable[str],
    owners: Iterable[str],
    companies: Iterable[str],
) -> list[Record]:
    """Records for aligned columns, in C: one join per contact, one UTF-8 encode in all."""
    texts = list(map(US.join, zip(map(str, rows), names, phones_, owners, companies, strict=True)))
    parts = "\x00".join(texts).encode().split(b"\x00")  # cell text never holds a NUL
    return parts if len(parts) == len(texts) else [t.encode() for t in texts]


def no_separator(values: list[str]) -> list[str]:
    """A unit separator inside a cell (only an ``_x001F_`` escape makes one) would split
    its record wrongly: it becomes a space. Checked on the whole column in one C call."""
    if US not in "".join(values):
        return values
    return [v.replace(US, " ") for v in values]


class _ContactList(Sequence):  # type: ignore[type-arg]
    """A read-only view of the records as ``Contact`` objects."""

    __slots__ = ("_records",)

    def __init__(self, records: Sequence[Record]):
        self._records = records

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        if isinstance(i, slice):
            return [to_contact(r) for r in self._records[i]]
        return to_contact(self._records[i])

    def __iter__(self) -> Iterator[Contact]:
        return map(to_contact, self._records)


class ContactIndex:
    """Contacts by normalised phone key, and Managers by name. Immutable once built."""

    def __init__(
        self,
        by_key: Mapping[int | str, Record] | None = None,
        records: Sequence[Record] | None = None,
        managers: dict[str, str] | None = None,
        warnings: list[Text] | None = None,
        *,
        source: Path | None = None,
        mtime: float = 0.0,
        fingerprint: tuple = (),
        build_seconds: float = 0.0,
        area_code: str = "",
    ):
        self._by_key = by_key or {}
        # A tuple of bytes: the collector untracks it once and never walks it again. Any
        # other sequence but a list (the packed records read back by crm/index_store.py,
        # which hold no objects at all) is kept as it is: copying would cost the start-up.
        self._records: Sequence[Record] = (
            records
            if isinstance(records, Sequence) and not isinstance(records, list)
            else tuple(records or ())
        )
        self.managers: dict[str, str] = managers or {}  # name_key(owner) -> extension
        self.warnings: list[Text] = warnings or []
        self.source = source
        self.mtime = mtime
        self.fingerprint = fingerprint  # what was read: (part, CRC-32, size) per zip member
        self.build_seconds = build_seconds
        # The city whose local numbers the keys were built with (phones.normalize):
        # callers and lookups are normalised with the same one, or they would not match.
        self.area_code = area_code

    def lookup(self, number: object) -> Contact | None:
        """The contact with this phone number in any form, or ``None``. O(1)."""
        key = phones.normalize(number, area_code=self.area_code)
        return None if key is None else self.lookup_key(key)

    def lookup_key(self, key: str) -> Contact | None:
        """Like ``lookup`` for an already normalised key."""
        if not (key and key.isdigit() and key.isascii()):
            return None
        record = self._by_key.get(key_slot(key))
        return None if record is None else to_contact(record)

    def owner_extension(self, owner: object) -> str | None:
        """Extension for an Owner value: digits are the extension itself; a name is looked
        up in Managers (case, spaces and ё/е do not matter). ``None`` if unresolved."""
        text = cell_text(owner)
        if not text:
            return None
        if text.isdigit() and text.isascii():
            return text
        return self.managers.get(name_key(text))

    def owner_name(self, owner: object) -> str:
        """One name per manager, whatever the Owner cell says: an extension listed in
        Managers gives that manager's name, a name its spelling there; else as typed."""
        text = cell_text(owner)
        ext = self.owner_extension(text)
        names = getattr(self.managers, "names", {})
        return names.get(ext, text) if ext else text

    def packed(self) -> tuple[Mapping[int | str, Record], Sequence[Record]]:
        """(phone slot → record, records in sheet order): what ``crm/index_store.py``
        writes to disk. A record under several slots is the same object each time."""
        return self._by_key, self._records

    @property
    def contacts(self) -> Sequence[Contact]:
        """All contacts in sheet order."""
        return _ContactList(self._records)

    @property
    def phone_count(self) -> int:
        """Distinct phone keys (a contact may have several numbers)."""
        return len(self._by_key)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Contact]:
        return iter(self.contacts)

    def __repr__(self) -> str:
        return (
            f"<ContactIndex {len(self)} contacts, {len(self.managers)} managers, "
            f"{len(self.warnings)} warnings, source={self.source}>"
        )


class Managers(dict):
    """The Managers sheet: name_key(owner) → extension, and ``names``: extension → the
    owner's name as first written there (what reports show)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: dict[str, str] = {}


def name_key(name: str) -> str:
    """How owner names compare: trimmed, inner spaces collapsed, case-folded, ё = е."""
    return " ".join(name.split()).casefold().replace("ё", "е")
