"""The floor of a transfer answer (issue 14, target 1): a bare client on websocket-client
that answers every type-1 request with a fixed ``Transfer(callID, "101")`` at once — no
contacts, no journal, no decision — on the same test connector, under the same load as the
agent (``bench_agent.play_transfer_load``). What the agent adds is its figure over this one.

    python -m bench.bench_floor [--quick]
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable
from typing import Any

import websocket

from bench.bench_agent import WireClock, play_transfer_load
from pz_excel.protocol import codec as protocol


class FloorClient:
    """One connection as extension 101; a reader thread answers each type 1 at once."""

    def __init__(self, url: str) -> None:
        settings = protocol.ConnectSettings(url, "101")
        self.transport = settings.transport
        self.ws = websocket.create_connection(protocol.connect_url(settings), timeout=10)
        self.ws.settimeout(None)
        self.thread = threading.Thread(target=self._answer, name="floor", daemon=True)
        self.thread.start()

    def _answer(self) -> None:
        while True:
            try:
                frame = self.ws.recv()
            except Exception:  # noqa: BLE001 - closed at the end of the run
                return
            for message in protocol.decode_frame(frame):
                if isinstance(message, protocol.Event) and message.type == 1:
                    xml = protocol.transfer_request(message.call_id, "101", 0)
                    self.ws.send(protocol.encode_frame(xml, self.transport))

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        finally:
            self.thread.join(5)


def bench_floor(phases: list[tuple[float, int]], phones: list[str]) -> dict[str, Any]:
    from pz_excel.tools.testserver import ServerThread

    clock = WireClock()
    server = ServerThread(host="127.0.0.1", port=0, on_log=clock).start()
    client = FloorClient(server.url)
    try:
        return {"transfers": play_transfer_load(server, clock, phases, phones)}
    finally:
        client.close()
        server.stop()


def ratios(agent: list[dict], floor: list[dict]) -> list[dict[str, float]]:
    """Per rate: the agent's p50 and p99 over the floor's (same load, same run)."""
    by_rate = {p["rate"]: p for p in floor}
    out = []
    for p in agent:
        f = by_rate.get(p["rate"])
        if f and f["p50_s"] and f["p99_s"]:
            out.append({"rate": p["rate"], "p50_ratio": p["p50_s"] / f["p50_s"],
                        "p99_ratio": p["p99_s"] / f["p99_s"]})
    return out


def print_floor(floor: dict, agent: dict | None, out: Callable[[str], None]) -> None:
    out("Floor: a bare websocket-client answering each transfer request at once "
        "(same connector, same load)")
    agent_by_rate = {p["rate"]: p for p in (agent or {}).get("transfers", [])}
    out("  rate/s  requests  floor p50    p99      agent p50    p99     ratio p50  p99")
    for p in floor["transfers"]:
        a = agent_by_rate.get(p["rate"])
        tail = ""
        if a is not None and p["p50_s"] and p["p99_s"]:
            tail = (f"  {a['p50_s'] * 1e3:7.2f} ms {a['p99_s'] * 1e3:6.2f} ms"
                    f"  {a['p50_s'] / p['p50_s']:6.2f}× {a['p99_s'] / p['p99_s']:5.2f}×")
        out(f"  {p['rate']:6g}  {p['requests']:8d}  {p['p50_s'] * 1e3:6.2f} ms "
            f"{p['p99_s'] * 1e3:6.2f} ms{tail}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.bench_floor")
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    phases = [(1.0, 2), (50.0, 100), (500.0, 500)] if quick else [(50.0, 1500), (500.0, 5000)]
    print_floor(bench_floor(phases, []), None, print)
