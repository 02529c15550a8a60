"""Phone numbers as comparable keys.

``normalize`` turns whatever a user typed into a cell, or a connector sent as a caller ID,
into one key per number: E.164 digits without ``+`` (``73430112233``), or the digits of a
short internal number as they are (``101``). ``+7 (343) 011-22-33``, ``8 343 011 22 33``,
``83430112233`` and the Excel float ``73430112233.0`` are all ``73430112233``.

It runs once per contact when a million-row workbook is indexed and once per transfer
request, so the common Russian forms take a pure-string path (one ``bytes.translate`` and a
few length checks; ``normalize_many`` does a whole column at once); only the rest goes to
``phonenumbers``, imported on first use. Short internal numbers (up to 6 digits) must be
typed as bare digits. A key reads back as itself, except a foreign number under 11 digits,
which needs its ``+`` (a bare ``49301234`` could as well be a mistyped local number);
``display(key)`` always reads back.

Local numbers (an area code set, ``area_code="343"``): many PBXs present city numbers
without the area code and many CRMs store them so. A Russian national number is 10 digits,
area code (3–5 digits) plus local number (7–5 digits), so with an area code of length A a
bare number of exactly ``10 - A`` digits (separators allowed: ``555-00-00``) is that city's
number: 343 + ``5550000`` is ``73435550000``. Every other length keeps its meaning: up to
:data:`MAX_SHORT` digits an internal extension (``101``, and ``12345`` with a 3-digit code),
a 7-digit number that does not complete the code stays unmatched (:func:`local_mismatch`
says why). Without an area code nothing is guessed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pz_excel.i18n import Text

#: Longest internal (extension) number compared as plain digits.
MAX_SHORT = 6
#: Longer input is not a phone number (a pasted paragraph, a formula, a note).
MAX_INPUT = 80

# Separators people and PBXs put into numbers: spaces (incl. no-break and thin), dashes,
# brackets, dots, slashes. Removed in one C-level pass.
_SEPARATORS = " \t-().\u00a0\u2007\u2009\u202f\u2010\u2011\u2012\u2013\u2014\u2212/"
_STRIP = str.maketrans("", "", _SEPARATORS)
_ASCII_SEPARATORS = b" \t-()./"
_ALLOWED = frozenset(_SEPARATORS + "+0123456789")

# A trailing extension: "доб. 123", "ext 45", "x12", "#7" — the key is the main number.
_EXTENSION = re.compile(r"(?:,|;)?\s*(?:доб|доп|вн|ext|x|#)\.?\s*:?\s*\d{1,6}\s*$", re.IGNORECASE)
_TEL_PREFIX = re.compile(r"^\s*(?:tel|тел|phone)\s*[.:]?\s*", re.IGNORECASE)

#: Digits in a Russian national number: area code + local number.
NATIONAL_DIGITS = 10
#: Lengths of local numbers that an area code can complete (5–7 with a 5–3-digit code).
LOCAL_LENGTHS = range(5, 8)


def parse_area_code(value: object) -> str:
    """The area code setting as digits (``"343"``), ``""`` when empty.

    3 to 5 digits, separators, brackets and a leading ``+7`` or ``8 `` allowed (``(343)``,
    ``+7 343``, ``8 (343)``; ``8142`` stays Petrozavodsk's code); an Excel number
    ``343.0`` reads as ``343``. Anything else is a :class:`~pz_excel.i18n.UserError`
    saying what is expected.
    """
    from pz_excel.i18n import Text, UserError

    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = "" if value is None else str(value).strip()
    if not text:
        return ""
    digits = text.translate(_STRIP)
    if digits.startswith("+7"):
        digits = digits[2:]
    elif re.match(r"8[\s(\-]", text):  # "8 (343)": the trunk prefix, not a 4-digit code
        digits = digits[1:]
    if digits.isascii() and digits.isdigit() and 3 <= len(digits) <= 5 and digits[0] in "3456789":
        return digits
    raise UserError(
        Text(
            f"area code {text!r} is not valid: give the city's code of 3 to 5 digits "
            "without the 8 or +7, e.g. 343 or 3452",
            f"код города «{text}» указан неверно: нужен код из 3–5 цифр без 8 и +7, "
            "например 343 или 3452",
        )
    )


def _local(digits: str, area_code: str) -> str | None:
    """The key of a local number of the city ``area_code``, if its length completes it."""
    if area_code and len(digits) + len(area_code) == NATIONAL_DIGITS:
        return "7" + area_code + digits
    return None


def local_digits(raw: object) -> str | None:
    """The digits of what may be a local number (5–7 bare digits, separators allowed), for
    a caller that does not know the area code and leaves it to the agent, which does."""
    text = raw if isinstance(raw, str) else ""
    digits = text.strip().translate(_STRIP)
    ok = digits.isascii() and digits.isdigit() and len(digits) in LOCAL_LENGTHS
    return digits if ok else None


def local_mismatch(raw: object, area_code: str) -> tuple[int, int] | None:
    """(digits, expected) when ``raw`` looks like a local number (5–7 bare digits, not an
    extension) whose length does not complete ``area_code`` to 10 digits; else ``None``.
    For the warning that says why a number like ``555-00-00`` was not matched."""
    if not area_code:
        return None
    text = str(int(raw)) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else raw
    if not isinstance(text, str) or not text.isascii():
        return None
    digits = text.encode().translate(None, _ASCII_SEPARATORS)
    if not digits.isdigit() or len(digits) not in LOCAL_LENGTHS:
        return None
    expected = NATIONAL_DIGITS - len(area_code)
    if len(digits) == expected or normalize(text, area_code=area_code) is not None:
        return None
    return len(digits), expected


def normalize(raw: object, region: str = "RU", area_code: str = "") -> str | None:
    """A comparable key for ``raw``, or ``None`` if it is not a phone number.

    ``area_code`` (digits, see :func:`parse_area_code`): the city whose local numbers
    are written without it (the module's docstring has the rule). Never raises: callers
    feed it arbitrary cell values and caller IDs.
    """
    if type(raw) is str:
        text = raw
    elif isinstance(raw, bool) or raw is None:
        return None
    elif isinstance(raw, int):
        if raw <= 0 or raw >= 10**16:
            return None
        return _from_digits(str(raw), region, area_code)
    elif isinstance(raw, float):
        # Excel stores a number typed without a leading apostrophe as a double.
        if not math.isfinite(raw) or raw <= 0 or raw >= 1e16 or not raw.is_integer():
            return None
        return _from_digits(str(int(raw)), region, area_code)
    elif isinstance(raw, str):  # a str subclass (lxml's smart strings)
        text = str(raw)
    else:
        return None
    if "(0)" in text:  # "+44 (0)20 …": phonenumbers knows to drop the trunk 0
        return _slow(text, region, area_code)
    if text.isascii():
        # bytes.translate with a delete set is several times faster than str.translate
        packed = text.encode().translate(None, _ASCII_SEPARATORS)
        plus = packed.startswith(b"+")
        if plus:
            packed = packed[1:]
        if not packed.isdigit():
            return _slow(text, region, area_code)
        digits = packed.decode()
    else:
        digits = text.translate(_STRIP)
        plus = digits.startswith("+")
        if plus:
            digits = digits[1:]
        if not (digits.isascii() and digits.isdigit()):
            return _slow(text, region, area_code)
    if plus:
        if len(digits) == 11 and digits[0] == "7":
            return digits
        return _international(digits)
    local = _local(digits, area_code)
    if local is not None:  # before the extension rule: "55-00-00" with a 4-digit code
        return local
    if len(digits) <= MAX_SHORT and text.strip() != digits:
        return None  # extensions are typed as bare digits; "7.5" or "1-2" are not numbers
    return _from_digits(digits, region)


def normalize_many(
    values: Sequence[object], region: str = "RU", area_code: str = ""
) -> list[str | None]:
    """``[normalize(v) for v in values]``, about three times faster for a column of cells.

    The usual Russian forms are decided for the whole column at once (one join, one
    ``bytes.translate``, one split); anything else goes through ``normalize`` one by one,
    so the result is always exactly what ``normalize`` gives (the column-wide forms, 10
    and 11 digits, do not depend on ``area_code``).
    """
    if region != "RU" or not values:
        return [normalize(v, region, area_code) for v in values]
    try:
        joined = "\x00".join(values)  # type: ignore[arg-type]
    except TypeError:  # numbers or empty cells among them
        joined = "\x00".join([v if type(v) is str else "" for v in values])
    if not joined.isascii() or "(0)" in joined:
        return [normalize(v, region, area_code) for v in values]
    parts = joined.encode().translate(None, _ASCII_SEPARATORS).decode().split("\x00")
    if len(parts) != len(values):  # a NUL inside a value
        return [normalize(v, region, area_code) for v in values]
    keys: list[str | None] = [
        (p if p[0] == "7" else "7" + p[1:] if p[0] == "8" else None)
        if len(p) == 11 and p.isdigit()
        else "7" + p
        if len(p) == 10 and p.isdigit()
        else p[1:]
        if len(p) == 12 and p[0] == "+" and p[1] == "7" and p[1:].isdigit()
        else None
        for p in parts
    ]
    if None in keys:
        for i, key in enumerate(keys):
            if key is None:
                keys[i] = normalize(values[i], region, area_code)
    return keys


def _from_digits(digits: str, region: str, area_code: str = "") -> str | None:
    """Key of a number given as ASCII digits without ``+``."""
    local = _local(digits, area_code)
    if local is not None:
        return local
    n = len(digits)
    if n <= MAX_SHORT:
        return digits if n >= 2 else None
    if region == "RU":
        if n == 11:
            if digits[0] == "7":
                return digits
            if digits[0] == "8":
                return "7" + digits[1:]
        elif n == 10:
            return "7" + digits
    return _national(digits, region)


def _slow(text: str, region: str, area_code: str = "") -> str | None:
    """Forms with something besides digits and separators: extensions, ``tel:``, ``(0)``.

    Every recursive call gets a strictly shorter string, so this always ends.
    """
    if len(text) > MAX_INPUT:
        return None  # a pasted paragraph, not a number: keep the regexes off it
    stripped = _TEL_PREFIX.sub("", text, count=1)
    main = _EXTENSION.sub("", stripped)
    if main != stripped:
        key = normalize(main, region, area_code)
        # "101 доб. 5" is not a number with an extension: only full numbers have them.
        return key if key is not None and len(key) > MAX_SHORT else None
    if stripped != text:
        return normalize(stripped, region, area_code)
    if "(0)" in text and set(text) <= _ALLOWED and text.lstrip().startswith("+"):
        return _international(text.strip())
    return None  # letters, '*', a '+' in the middle, Unicode digits: not a number to dial


def _national(digits: str, region: str) -> str | None:
    """A number without ``+``: international prefixes, the region's plan, else a key."""
    if digits.startswith("810") and len(digits) > 11:  # Russian international prefix
        return _international(digits[3:])
    if digits.startswith("00") and len(digits) > 9:  # the European one, also used in RU
        return _international(digits[2:])
    if len(digits) > 11 and _parse("+" + digits, None) == digits:
        # Longer than any national number with its trunk prefix: E.164 digits without the
        # "+", i.e. a key — and keys must normalise to themselves ("+90 …" is Turkey's, not
        # a Russian number with a 9 in front, as the region's plan would also accept).
        return digits
    key = _parse(digits, region)
    if key is None and len(digits) >= 11 and _parse("+" + digits, None) == digits:
        key = digits  # E.164 digits without the "+", i.e. a key: keys normalise to themselves
    return key


def _international(digits: str) -> str | None:
    if not digits.startswith("+"):
        digits = "+" + digits
    key = _parse(digits, None)
    if key is None and len(digits) == 12 and digits.startswith("+8"):
        # "+8 912 …": a common Russian typo for 8 912 … (and no country code is +83…/+89…).
        return "7" + digits[2:]
    return key


def _parse(text: str, region: str | None) -> str | None:
    pn = _phonenumbers()
    try:
        number = pn.parse(text, region)
    except pn.NumberParseException:
        return None
    # Full numbers only: a "local only" one (7 digits without an area code) has no key.
    if pn.is_possible_number_with_reason(number) != pn.ValidationResult.IS_POSSIBLE:
        return None
    e164 = pn.format_number(number, pn.PhoneNumberFormat.E164)
    if len(e164) > 16:  # "+" and at most 15 digits (E.164)
        return None
    try:  # a key must read back as itself, or the same number could get two keys
        again = pn.format_number(pn.parse(e164, None), pn.PhoneNumberFormat.E164)
    except pn.NumberParseException:
        return None
    return e164[1:] if again == e164 else None


@lru_cache(maxsize=1)
def _phonenumbers():  # type: ignore[no-untyped-def]
    import phonenumbers  # ~0.1 s to import: only when a number needs it

    return phonenumbers


def display(key: str | None) -> str:
    """A readable form of a key: ``+7 343 011-22-33``; internal numbers as they are."""
    if not key:
        return ""
    if not key.isdigit():  # tolerate a raw number instead of a key
        normal = normalize(key)
        if normal is None:
            return key
        key = normal
    if len(key) <= MAX_SHORT:
        return key
    if len(key) == 11 and key[0] == "7":
        return f"+7 {key[1:4]} {key[4:7]}-{key[7:9]}-{key[9:]}"
    pn = _phonenumbers()
    try:
        number = pn.parse("+" + key, None)
    except pn.NumberParseException:
        return "+" + key
    return pn.format_number(number, pn.PhoneNumberFormat.INTERNATIONAL)


def looks_like_phone(value: object) -> bool:
    """Is this cell a number to dial (rather than a name)? For "Call selected"."""
    return normalize(value) is not None


def is_internal(key: str | None) -> bool:
    """A short internal number (an extension), as opposed to an outside line."""
    return bool(key) and len(key) <= MAX_SHORT  # type: ignore[arg-type]


# A PBX service code: "*8" (call pickup), "*21#", "#31#" — digits among '*' and '#'.
_SERVICE_CODE = re.compile(r"^[*#][0-9*#]{0,14}$")


def extension(raw: object) -> str | None:
    """``raw`` as an internal extension (``"101"``), or ``None`` if it is not one: the one
    rule for the Settings' extension and fallback, wherever they are typed."""
    key = normalize(raw)
    return key if key is not None and is_internal(key) else None


def dial_problem(number: str, me: str = "", area_code: str = "") -> Text | None:
    """Why ``number`` is not something to dial from extension ``me``, or ``None`` if it is.

    The one rule for every way a call is placed (``pz-excel call``, the ribbon, PZ_CALL).
    Dialled: what :func:`normalize` reads as a number (``+7 (343) 011-22-33``,
    ``8 343 0112233``, ``101``, ``… доб. 12``), any bare digits a PBX can dial (a local
    ``5550000`` without an area code set, ``+`` and up to 15 digits), and PBX service
    codes starting with ``*`` or ``#`` (``*8``, ``*21#``). Refused: a formula (``=…``),
    no digits, letters or symbols besides separators and the ``доб.``/``ext`` convention,
    and ``me`` itself (a call to yourself only rings your own phone).
    """
    from pz_excel.i18n import Text, excerpt

    text = (number or "").strip()
    if not text:
        return Text("no number to call", "нет номера для звонка")
    shown = excerpt(text)
    if text.startswith("="):
        return Text(
            f"'{shown}' looks like a formula, not a phone number: nothing was dialled",
            f"«{shown}» похоже на формулу, а не на номер телефона: звонок не сделан",
        )
    if not any(c.isdigit() for c in text):
        return Text(
            f"'{shown}' has no digits: it is not a phone number, nothing was dialled",
            f"в «{shown}» нет цифр: это не номер телефона, звонок не сделан",
        )
    key = normalize(text, area_code=area_code)
    if key is None:
        bare = text.translate(_STRIP)
        plain = bare[1:] if bare.startswith("+") else bare
        if plain.isascii() and plain.isdigit() and 2 <= len(plain) <= 15:
            key = plain  # the PBX dials bare digits as they are
        elif _SERVICE_CODE.match(bare) and any(c.isdigit() for c in bare):
            return None
        else:
            return Text(
                f"'{shown}' is not a phone number (only digits, spaces, ( ) - and a "
                "leading + are allowed): nothing was dialled",
                f"«{shown}» — не номер телефона (допустимы только цифры, пробелы, ( ) - "
                "и + в начале): звонок не сделан",
            )
    if me and key == me.strip():
        return Text(
            f"{shown} is your own extension: a call to yourself only rings your phone, "
            "nothing was dialled",
            f"{shown} — ваш собственный добавочный: звонок самому себе не сделан",
        )
    return None
