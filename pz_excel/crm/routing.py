"""The transfer decision ("smart transfer"), pure and fast.

For a transfer request the connector asks every client at once and routes the call to the
first non-empty answer, while the caller waits (PROTOCOL.md §4). So a decision is one
normalisation and two dict lookups: the caller's contact, then its owner's extension.
Every agent of a team reads the same workbook, so all of them give the same answer.

Rules (``Decision.rule``):

* ``owner-extension`` / ``owner-name`` — the contact's Owner is an extension, or a name found
  in Managers: the call goes there;
* ``unknown-caller`` — not in Contacts (or no usable caller ID), ``no-owner`` — the contact
  has no Owner, ``owner-unresolved`` — the Owner name is not in Managers: declined (empty
  ``To``, so another colleague's agent may take it)…
* ``fallback`` — …unless a fallback extension is set: then it goes there, and the reason says
  which of the three problems sent it;
* ``internal`` — a short internal number not in Contacts (a colleague): declined, never
  sent to the fallback.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from pz_excel.crm import phones
from pz_excel.crm.contacts import Contact, ContactIndex, name_key
from pz_excel.crm.schema import cell_text as _text
from pz_excel.i18n import Text


@dataclass(frozen=True)
class Decision:
    call_id: str
    caller: str  # as the connector sent it
    to: str  # the extension to transfer to; "" declines
    reason: Text
    contact: Contact | None
    rule: str
    key: str | None = None  # the caller's normalised number

    @property
    def declined(self) -> bool:
        return not self.to


def decide(
    call_id: str,
    caller: str,
    index: ContactIndex,
    *,
    fallback: str = "",
    me: str | None = None,
) -> Decision:
    """Where the transfer request ``call_id`` from ``caller`` should go.

    ``fallback``: extension for callers that cannot be routed to an owner ("" declines
    them). ``me``: this agent's extension, only to say so in the reason. The caller ID is
    normalised with the index's area code, as its contacts were (``5550000`` is then
    the city's ``73435550000``).
    """
    key = phones.normalize(caller, area_code=index.area_code)
    contact = index.lookup_key(key) if key is not None else None
    return _decision(call_id, caller, key, contact, index.owner_extension, fallback, me)


def linear_scan_decide(
    call_id: str,
    caller: str,
    rows: Iterable[Sequence[object]],
    managers: Iterable[Sequence[object]] | Mapping[str, object],
    *,
    fallback: str = "",
    me: str | None = None,
    first_row: int = 2,
) -> Decision:
    """The same decision made the way vendor tutorials do it: walk every contact row,
    normalise its phone and compare, then walk Managers for the owner. O(n) per call;
    kept only as the benchmark's baseline. ``rows``: (name, phone, owner, company)."""
    key = phones.normalize(caller)
    contact = None
    if key is not None:
        for i, row in enumerate(rows):
            phone = row[1]
            if phone is None or phone == "":
                continue
            numbers = re.split(r"[,;\n]", phone) if isinstance(phone, str) else [phone]
            if any(phones.normalize(n) == key for n in numbers):
                name, _, owner, company = (list(row) + [None] * 4)[:4]
                contact = Contact(first_row + i, _text(name), key, _text(owner), _text(company))
                break
    pairs = list(managers.items()) if isinstance(managers, Mapping) else list(managers)

    def owner_extension(owner: object) -> str | None:
        text = _text(owner)
        if text.isdigit() and text.isascii():
            return text
        for name, ext in pairs:
            if name_key(_text(name)) == name_key(text):
                return _text(ext) or None
        return None

    return _decision(call_id, caller, key, contact, owner_extension, fallback, me)


def _decision(
    call_id: str,
    caller: str,
    key: str | None,
    contact: Contact | None,
    owner_extension: Callable[[object], str | None],
    fallback: str,
    me: str | None,
) -> Decision:
    shown = phones.display(key) if key else str(caller or "").strip()[:40]
    if contact is None:
        if key is None:
            why = (
                Text("no caller number (hidden)", "номер звонящего скрыт")
                if not shown
                else Text(
                    f"caller '{shown}' is not a phone number",
                    f"звонящий «{shown}» — не номер телефона",
                )
            )
        elif phones.is_internal(key):
            return Decision(
                call_id,
                caller,
                "",
                Text(
                    f"internal call from {key}: not routed",
                    f"внутренний звонок с {key}: не направляется",
                ),
                None,
                "internal",
                key,
            )
        else:
            why = Text(f"{shown} is not in Contacts", f"номера {shown} нет в контактах")
        return _unrouted(call_id, caller, key, None, "unknown-caller", why, fallback, me)

    who_en = _who(contact, shown, "row")
    who_ru = _who(contact, shown, "строка")
    owner = contact.owner
    if not owner:
        why = Text(f"{who_en} has no owner", f"у {who_ru} не указан ответственный")
        return _unrouted(call_id, caller, key, contact, "no-owner", why, fallback, me)
    ext = owner_extension(owner)
    if ext is None:
        why = Text(
            f"owner '{owner}' of {who_en} is not in Managers",
            f"ответственного «{owner}» для {who_ru} нет в листе «Менеджеры»",
        )
        return _unrouted(call_id, caller, key, contact, "owner-unresolved", why, fallback, me)
    by_extension = owner == ext
    rule = "owner-extension" if by_extension else "owner-name"
    you_en, you_ru = (" (this extension)", " (этот добавочный)") if ext == me else ("", "")
    if by_extension:
        reason = Text(f"{who_en}: owner {ext}{you_en}", f"{who_ru}: ответственный {ext}{you_ru}")
    else:
        reason = Text(
            f"{who_en}: owner {owner} → {ext}{you_en}",
            f"{who_ru}: ответственный {owner} → {ext}{you_ru}",
        )
    return Decision(call_id, caller, ext, reason, contact, rule, key)


def _who(contact: Contact, shown: str, row_word: str) -> str:
    name = contact.name or shown
    extra = f"{contact.company}, " if contact.company else ""
    return f"{name} ({extra}{row_word} {contact.row})"


def _unrouted(
    call_id: str,
    caller: str,
    key: str | None,
    contact: Contact | None,
    rule: str,
    why: Text,
    fallback: str,
    me: str | None,
) -> Decision:
    fallback = (fallback or "").strip()
    if fallback:
        you_en, you_ru = (" (this extension)", " (этот добавочный)") if fallback == me else ("", "")
        return Decision(
            call_id,
            caller,
            fallback,
            Text(
                f"{why.en} → fallback {fallback}{you_en}",
                f"{why.ru} → запасной добавочный {fallback}{you_ru}",
            ),
            contact,
            "fallback",
            key,
        )
    return Decision(
        call_id, caller, "", Text(f"{why.en}: declined", f"{why.ru}: отказ"), contact, rule, key
    )
