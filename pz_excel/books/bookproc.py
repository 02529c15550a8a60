"""The workbook file written by a process of its own, so the caller never waits for a save.

Why a process: a save of a big book (the Calls rows' XML, the Dashboard, the zip) is Python
work that holds the interpreter lock for milliseconds at a time. In the agent's process the
connector's reading thread — the one that answers a caller's transfer request — waited
behind it: with the file written here, the same load measured 500 req/s p99 9.7 → 1.4 ms
(docs/performance.md, "Everything at once").

``FileBookProcess`` has ``FileBook``'s face and hands every call to a child
(``python -m pz_excel.books.bookproc``) over its stdin/stdout as pickles, one request and one
reply at a time; waiting on the pipe releases the lock. The child holds the real
``FileBook`` (and its memory). The journal stays in the agent: rows are marked written only
after the child's reply, so a child that dies loses nothing: the call fails, the rows stay
dirty, and the next call starts a new child. What the child logs comes back with its reply
and is logged here, under the same logger names.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from pz_excel.books import BookDefaults
from pz_excel.crm.schema import CallRow
from pz_excel.i18n import Text

log = logging.getLogger("pz_excel.books")


class BookProcessGone(Exception):
    """The book's process ended (killed, out of memory): the rows stay in the journal and
    the next write starts a new one."""


class FileBookProcess(BookDefaults):
    """A ``CallsBook`` on an .xlsx/.xlsm file, written by a child process.

    The child starts at once and reads the book while the agent goes on with its start-up;
    the first call waits for it (and raises what ``FileBook`` raised on opening, e.g. a
    ``UserError`` for a Calls sheet with wrong columns)."""

    kind = "file"

    def __init__(self, path: Path | str, lang: str | None = None) -> None:
        self.path = Path(path).expanduser().resolve()
        self.lang = lang
        self.description = str(Text(f"file {self.path}", f"файл {self.path}"))
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._pending = 0  # replies the child owes (the opening one is not waited for)
        self._recreated = False
        self._start()

    # ------------------------------------------------------------------ FileBook's face

    def write_calls(self, rows: Sequence[CallRow]) -> int:
        if not rows:
            return 0
        return self._call("write_calls", list(rows))

    def write_parts(self, writer: Callable[[Any], None]) -> bool:
        """``writer`` must pickle (a module function, a partial of one, a dataclass); what
        it notes on itself while it runs (``ContactAppend.row``) is copied back."""
        done, ran = self._call("write_parts", writer)
        if hasattr(writer, "__dict__") and hasattr(ran, "__dict__"):
            writer.__dict__.update(ran.__dict__)
        return done

    def prepare(self) -> None:
        self.ensure_calls_sheet()

    def ensure_calls_sheet(self) -> bool:
        return self._call("ensure_calls_sheet")

    def existing_call_ids(self) -> set[str]:
        return self._call("existing_call_ids")

    def take_recreated(self) -> bool:
        recreated, self._recreated = self._recreated, False
        return recreated

    def close(self) -> None:
        """The child ends (what it read is forgotten); a later call starts a new one."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is None:
                return
            try:
                assert proc.stdin is not None
                proc.stdin.close()  # end of requests: the child leaves its loop
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
            finally:
                if proc.stdout is not None:
                    proc.stdout.close()

    # ------------------------------------------------------------------ the pipe

    def _start(self) -> None:
        # Windows: no console flashes up, and it yields to the agent (as nice 10 does)
        flags = (getattr(subprocess, "CREATE_NO_WINDOW", 0)
                 | getattr(subprocess, "BELOW_NORMAL_PRIORITY_CLASS", 0))
        # Our own package first on its path, wherever the agent was started from.
        home = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (home, os.environ.get("PYTHONPATH")) if p))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "pz_excel.books.bookproc"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, creationflags=flags, env=env,
            # its tracebacks, if any, where ours go; none where we have none (pythonw)
            stderr=None if _has_stderr() else subprocess.DEVNULL,
        )
        self._pending = 0
        self._send(("open", str(self.path), self.lang))
        self._pending = 1

    def _send(self, request: tuple) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        pickle.dump(request, self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self._proc.stdin.flush()

    def _reply(self) -> tuple[bool, Any, bool]:
        assert self._proc is not None and self._proc.stdout is not None
        ok, value, recreated, records = pickle.load(self._proc.stdout)
        for name, level, message in records:
            logging.getLogger(name).log(level, "%s", message)
        # FileBook notes a Calls sheet it had to (re)create on any read: noted here at once
        self._recreated = self._recreated or recreated
        return ok, value, recreated

    def _call(self, op: str, *args: Any) -> Any:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._forget()
                self._start()
            try:
                self._send((op, *args))
                self._pending += 1
                replies = []
                while self._pending:  # the opening's reply first, if still owed
                    replies.append(self._reply())
                    self._pending -= 1
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                self._forget()
                raise BookProcessGone(f"the book's process ended ({exc!r}); rows stay in "
                                      "the journal") from exc
        for ok, value, _recreated in replies:  # the opening's error is this call's
            if not ok:
                raise value
        return replies[-1][1]

    def _forget(self) -> None:
        proc, self._proc = self._proc, None
        self._pending = 0
        if proc is not None:
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    try:
                        pipe.close()
                    except OSError:
                        pass


# ---------------------------------------------------------------------- the child


class _Records(logging.Handler):
    """What the child logs, sent back with the reply it belongs to."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.taken: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.taken.append((record.name, record.levelno, record.getMessage()))


def _answer(out: BinaryIO, ok: bool, value: Any, records: _Records,
            book: Any = None) -> None:
    taken, records.taken = records.taken, []
    recreated = book is not None and book.take_recreated()
    try:
        data = pickle.dumps((ok, value, recreated, taken), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - an error that does not pickle still gets back
        text = "".join(traceback.format_exception(value)) if not ok else repr(value)
        data = pickle.dumps((False, RuntimeError(text), recreated, taken))
    out.write(data)
    out.flush()


#: FileBook's methods that go through the pipe as they are (write_parts also returns its writer).
_PLAIN = frozenset({"write_calls", "ensure_calls_sheet", "existing_call_ids"})


def _serve(requests: BinaryIO, out: BinaryIO) -> None:
    from pz_excel.books.filebook import FileBook

    records = _Records()
    logging.getLogger().addHandler(records)
    logging.getLogger().setLevel(logging.INFO)
    book: FileBook | None = None
    opened: tuple[str, str | None] | None = None
    while True:
        try:
            request = pickle.load(requests)
        except EOFError:
            break  # the agent closed the pipe: done
        op, args = request[0], request[1:]
        try:
            if op == "open":
                opened = (args[0], args[1])
                book = FileBook(*opened)
                _answer(out, True, None, records, book)
                continue
            if book is None:  # the opening failed: try again, its error is this call's
                assert opened is not None
                book = FileBook(*opened)
            if op == "write_parts":
                value = (book.write_parts(args[0]), args[0])
            elif op in _PLAIN:
                value = getattr(book, op)(*args)
            else:
                raise ValueError(f"not a book operation: {op!r}")
            _answer(out, True, value, records, book)
        except Exception as exc:  # noqa: BLE001 - every error goes to the agent, which decides
            _answer(out, False, exc, records, book)
    if book is not None:
        book.close()


def _has_stderr() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.fileno() >= 0
    except (AttributeError, OSError, ValueError):  # pythonw, a replaced stream
        return False


def main() -> None:
    # Background work: on a busy machine the agent's reading thread (a caller waiting)
    # and the connector come first (Windows: BELOW_NORMAL_PRIORITY_CLASS at the start).
    if hasattr(os, "nice"):
        os.nice(10)
    # The pipe is stdout: whatever else would print there goes to stderr (or nowhere).
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    if _has_stderr():
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    else:
        sink = os.open(os.devnull, os.O_WRONLY)
        os.dup2(sink, sys.stdout.fileno())
        os.close(sink)
    _serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
