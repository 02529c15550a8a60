"""The vendor's captured frames (copied from shared/protocol/captures), as test data."""

from __future__ import annotations

import base64
import json
from pathlib import Path

DATA = Path(__file__).parent / "data"
TESTSERVER = DATA / "testserver-1.1.2-session.jsonl"
DIAGNOSTIC = DATA / "diagnostic-1.1.2-via-proxy.jsonl"


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def server_frames() -> list[dict]:
    """Every frame the vendor's server sent (testserver 'recv' + diagnostic 'server' op 1)."""
    out = [x for x in lines(TESTSERVER) if x.get("dir") == "recv"]
    out += [x for x in lines(DIAGNOSTIC) if x.get("who") == "server" and x.get("op") == 1]
    return out


def client_frames() -> list[dict]:
    """Every frame a vendor client sent that carries a decodable request."""
    out = [x for x in lines(TESTSERVER) if x.get("dir") == "send" and "decoded" in x]
    out += [x for x in lines(DIAGNOSTIC) if x.get("who") == "client" and x.get("op") == 1]
    return out


def b64(xml: str) -> str:
    return base64.b64encode(xml.encode()).decode()
