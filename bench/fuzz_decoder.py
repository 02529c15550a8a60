"""Fuzz the frame decoder: random bytes/text and mutated vendor capture frames.

``python -m bench.fuzz_decoder [--frames N] [--seed S]`` prints frames tried, the decode
outcomes and crashes (any exception escaping ``decode_frame``). The contract is 0 crashes.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import time
from collections import Counter
from pathlib import Path

from pz_excel.protocol import codec as protocol

CAPTURES = Path(__file__).resolve().parent.parent / "tests" / "data"
INSERTS = [
    b"<",
    b">",
    b'"',
    b"&",
    b"&amp;",
    b"<!DOCTYPE x [<!ENTITY a 'b'>]>",
    b"\x00",
    b"\xd0",
    b"<Event/>",
    b"]]>",
    b"<![CDATA[",
    b"&#0;",
    b"\xff\xfe",
]


def seeds() -> list[bytes]:
    out = []
    for path in sorted(CAPTURES.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            frame = json.loads(line).get("frame")
            if frame and frame != "!!!not base64":
                out.append(base64.b64decode(frame))
    return out


def mutate(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 8)):
        op = rng.random()
        pos = rng.randrange(len(data) + 1)
        if op < 0.3 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op < 0.5:
            del data[pos : pos + rng.randint(1, 20)]
        elif op < 0.8:
            data[pos:pos] = rng.choice(INSERTS)
        else:
            data += data[: rng.randrange(len(data) + 1)]
    return bytes(data)


def run(frames: int, seed: int) -> dict:
    rng = random.Random(seed)
    pool = seeds()
    outcomes: Counter[str] = Counter()
    crashes = 0
    started = time.perf_counter()
    for i in range(frames):
        kind = i % 4
        if kind == 0:
            frame: bytes | str = rng.randbytes(rng.randint(0, 400))
        elif kind == 1:
            frame = mutate(rng, rng.choice(pool))
        elif kind == 2:
            frame = base64.b64encode(mutate(rng, rng.choice(pool))).decode()
        else:
            frame = mutate(rng, rng.choice(pool)).decode("utf-8", "replace")
        try:
            for msg in protocol.decode_frame(frame):
                outcomes[type(msg).__name__] += 1
        except Exception:  # noqa: BLE001 - that is exactly what we count
            crashes += 1
    elapsed = time.perf_counter() - started
    return {
        "frames": frames,
        "crashes": crashes,
        "seconds": round(elapsed, 2),
        "frames_per_s": round(frames / elapsed),
        "outcomes": dict(outcomes),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    result = run(args.frames, args.seed)
    print(
        f"decoder fuzz: {result['frames']} frames tried, {result['crashes']} crashes, "
        f"{result['frames_per_s']} frames/s"
    )
    print("  outcomes:", ", ".join(f"{k} {v}" for k, v in sorted(result["outcomes"].items())))
    raise SystemExit(1 if result["crashes"] else 0)


if __name__ == "__main__":
    main()
