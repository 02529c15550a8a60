"""``pz-excel run --team URL --team-token TOKEN --team-pin SHA256``: the desktop agent told
of a team server. It then leaves transfer requests to the team server and reports its
events there (issue 15). The link is checked before the agent connects: a refused token,
a certificate that is not the pinned one or a token of another extension is one clear
line, and the agent does not start.

The token, like the connector password, need not be typed on the command line (it would
stay in the shell history): ``PZ_TEAM_TOKEN``, or the OS keyring entry ``pz-excel`` /
``team:EXT@URL``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TypeVar

import click

from pz_excel.i18n import Text, UserError, tr

F = TypeVar("F", bound=Callable[..., object])

TOKEN_ENV = "PZ_TEAM_TOKEN"

log = logging.getLogger(__name__)


def team_click_options(fn: F) -> F:
    """Adds ``team``, ``team_token`` and ``team_pin`` parameters."""
    fn = click.option(
        "--team-pin",
        metavar="SHA256",
        default=None,
        help=tr(
            "The team server's certificate SHA-256 fingerprint (pz-excel team run prints it).",
            "Отпечаток SHA-256 сертификата командного сервера (его печатает pz-excel team run).",
        ),
    )(fn)
    fn = click.option(
        "--team-token",
        metavar="TOKEN",
        default=None,
        help=tr(
            f"Your team server token (pz-excel team user add); or the variable {TOKEN_ENV}, "
            "or the OS keyring.",
            f"Ваш токен командного сервера (pz-excel team user add); или переменная "
            f"{TOKEN_ENV}, или системное хранилище паролей.",
        ),
    )(fn)
    fn = click.option(
        "--team",
        metavar="URL",
        default=None,
        help=tr(
            "A team server (https://HOST:10190; two servers: both, comma-separated): it "
            "routes transfers, this agent reports its calls to it.",
            "Командный сервер (https://ХОСТ:10190; два сервера — оба через запятую): "
            "переводы распределяет он, агент передаёт ему свои звонки.",
        ),
    )(fn)
    return fn


def keyring_user(url: str, phone: str) -> str:
    return f"team:{phone}@{url.strip().rstrip('/')}"


def find_token(url: str, phone: str, given: str | None) -> str:
    """``--team-token``, else ``PZ_TEAM_TOKEN``, else the keyring; a user error naming
    the three places when none has it."""
    if given and given.strip():
        return given.strip()
    if os.environ.get(TOKEN_ENV, "").strip():
        return os.environ[TOKEN_ENV].strip()
    from pz_excel.connector.credentials import SERVICE

    user = keyring_user(url, phone)
    try:
        import keyring

        found = keyring.get_password(SERVICE, user) or ""
    except Exception:  # noqa: BLE001 - no usable keyring: the other two places remain
        found = ""
    if found.strip():
        return found.strip()
    raise UserError(Text(
        f"no team server token: give --team-token, set {TOKEN_ENV}, or store it in the OS "
        f"keyring as {SERVICE!r} / {user!r}",
        f"нет токена командного сервера: укажите --team-token, задайте {TOKEN_ENV} или "
        f"сохраните его в системном хранилище паролей как {SERVICE!r} / {user!r}",
    ))


def team_link(url: str | None, token: str | None, pin: str | None, phone: str):
    """The checked link to the team server for the agent of extension ``phone`` (None
    without ``--team``): ``whoami`` must answer, for this very extension."""
    if not url:
        if token or pin:
            raise UserError(Text(
                "--team-token and --team-pin need --team URL",
                "для --team-token и --team-pin нужен --team URL",
            ))
        return None
    from pz_excel.agent.teamlink import F_EXTENSION, UNREACHABLE, TeamError, TeamLink

    link = TeamLink(url, find_token(url, phone, token), pin or "")
    try:
        who = link.whoami()  # a refused token or a wrong certificate: TeamError, one line
    except TeamError as exc:
        if exc.kind != UNREACHABLE:
            raise
        # Away for now: the agent's own work (screen pop, Calls) must not wait for it;
        # its events wait in the journal and go once it is back.
        log.warning("%s", Text(
            f"{exc.text.en}; the agent starts anyway and reports its calls once the team "
            "server is back",
            f"{exc.text.ru}; агент всё равно запускается и передаст звонки, когда "
            "командный сервер вернётся",
        ))
        return link
    theirs = str(who.get(F_EXTENSION) or "").strip()
    if theirs != phone.strip():
        link.close()
        raise UserError(Text(
            f"the team token belongs to extension {theirs or '?'}, but this agent is "
            f"extension {phone}: use {phone}'s own token (pz-excel team user add {phone})",
            f"токен командного сервера выдан добавочному {theirs or '?'}, а этот агент — "
            f"добавочный {phone}: нужен токен {phone} (pz-excel team user add {phone})",
        ))
    return link
