"""Log lines of the foreground agent (``pz-excel run``) on stderr: time, level word in the
user's language for warnings and errors, the message."""

from __future__ import annotations

import logging
import sys

from pz_excel.i18n import Text, current_lang

_LEVELS = {
    logging.WARNING: Text("warning", "предупреждение"),
    logging.ERROR: Text("error", "ошибка"),
    logging.CRITICAL: Text("critical", "критично"),
}


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, "%H:%M:%S")
        level = ""
        if record.levelno >= logging.WARNING:
            word = _LEVELS.get(record.levelno, Text(record.levelname.lower(), ""))
            level = f"{word.ru if current_lang() == 'ru' and word.ru else word.en}: "
        elif record.levelno < logging.INFO:
            level = "debug: "
        return f"{stamp} {level}{record.getMessage()}"


def setup_logging(verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter())
    root = logging.getLogger("pz_excel")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
