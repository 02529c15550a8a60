"""Read and rewrite a VBA project (``xl/vbaProject.bin``) without Office.

Used by ``pz-excel addin build --engine offline`` to turn the xlwings ribbon add-in template
into ``pz_excel.xlam``: swap the template's ribbon module for ours and set the xlwings module's
``PROJECT_NAME``. Pure Python, so the add-in can be assembled on any OS and in CI.

Formats, both public Microsoft specifications:

* [MS-CFB] compound file, version 3 (512-byte sectors): the container ``vbaProject.bin`` is.
* [MS-OVBA] the VBA streams inside it: ``PROJECT``, ``PROJECTwm``, ``VBA/dir`` (compressed),
  ``VBA/_VBA_PROJECT`` and one compressed source stream per module.

The project is written *source only*, the way [MS-OVBA] 2.3.4.1 asks writers to: the
``_VBA_PROJECT`` stream carries version ``0xFFFF`` and no performance cache, and every module's
text offset is 0 (no compiled p-code). The VBA editor then compiles from source when the file is
opened. The xlwings template ships the same way (its ``_VBA_PROJECT`` is the bare 7-byte form
and its ``xlwings`` module has no p-code), and LibreOffice exports VBA into .xlsm like this too.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

# ---------------------------------------------------------------------------------------------
# [MS-OVBA] 2.4.1 compression
# ---------------------------------------------------------------------------------------------

CHUNK = 4096
_MAX_CANDIDATES = 48  # match candidates tried per position: plenty for source text


def _copy_token_bits(difference: int) -> int:
    """[MS-OVBA] 2.4.1.3.19.1 CopyToken Help: bits used by the offset at this position."""
    return max((difference - 1).bit_length(), 4)


def decompress(data: bytes) -> bytes:
    """Decompress a CompressedContainer ([MS-OVBA] 2.4.1.3.1)."""
    if not data or data[0] != 0x01:
        raise ValueError("not an MS-OVBA compressed container (signature byte is not 0x01)")
    out = bytearray()
    pos = 1
    while pos < len(data):
        if pos + 2 > len(data):
            raise ValueError("truncated chunk header")
        header = int.from_bytes(data[pos : pos + 2], "little")
        if (header >> 12) & 0x7 != 0b011:
            raise ValueError(f"bad chunk signature at byte {pos}")
        end = min(pos + (header & 0x0FFF) + 3, len(data))
        pos += 2
        chunk_start = len(out)
        if not header & 0x8000:  # raw chunk: 4096 literal bytes
            out += data[pos : pos + CHUNK]
            pos += CHUNK
            continue
        while pos < end:
            flags = data[pos]
            pos += 1
            for bit in range(8):
                if pos >= end:
                    break
                if not flags & (1 << bit):
                    out.append(data[pos])
                    pos += 1
                    continue
                token = int.from_bytes(data[pos : pos + 2], "little")
                pos += 2
                bits = _copy_token_bits(len(out) - chunk_start)
                length = (token & (0xFFFF >> bits)) + 3
                offset = (token >> (16 - bits)) + 1
                src = len(out) - offset
                if src < chunk_start:
                    raise ValueError("copy token points before its chunk")
                for i in range(length):  # byte by byte: source and target may overlap
                    out.append(out[src + i])
    return bytes(out)


def _compress_chunk(chunk: bytes) -> bytes:
    out = bytearray()
    heads: dict[bytes, list[int]] = {}
    n = len(chunk)
    pos = 0

    def remember(p: int) -> None:
        if p + 3 <= n:
            heads.setdefault(chunk[p : p + 3], []).append(p)

    while pos < n:
        flag_at = len(out)
        out.append(0)
        flags = 0
        for bit in range(8):
            if pos >= n:
                break
            best_len, best_off = 0, 0
            if pos > 0 and pos + 3 <= n:
                bits = _copy_token_bits(pos)
                max_len = min((0xFFFF >> bits) + 3, n - pos)
                for cand in reversed(heads.get(chunk[pos : pos + 3], [])[-_MAX_CANDIDATES:]):
                    length = 3
                    while length < max_len and chunk[cand + length] == chunk[pos + length]:
                        length += 1
                    if length > best_len:
                        best_len, best_off = length, pos - cand
                        if length == max_len:
                            break
            if best_len >= 3:
                bits = _copy_token_bits(pos)
                token = ((best_off - 1) << (16 - bits)) | (best_len - 3)
                out += token.to_bytes(2, "little")
                flags |= 1 << bit
                for p in range(pos, pos + best_len):
                    remember(p)
                pos += best_len
            else:
                out.append(chunk[pos])
                remember(pos)
                pos += 1
        out[flag_at] = flags
    return bytes(out)


def compress(data: bytes) -> bytes:
    """Compress to a CompressedContainer ([MS-OVBA] 2.4.1.3.6)."""
    out = bytearray(b"\x01")
    for start in range(0, len(data), CHUNK):
        chunk = data[start : start + CHUNK]
        body = _compress_chunk(chunk)
        if len(body) + 2 <= 4098:
            out += (0xB000 | (len(body) - 1)).to_bytes(2, "little")  # flag 1, signature 0b011
            out += body
        elif len(chunk) == CHUNK:
            out += (0x3FFF).to_bytes(2, "little")  # raw chunk: flag 0, size 4095
            out += chunk
        else:  # a short, incompressible last chunk has no valid encoding; text never gets here
            raise ValueError("data too random to store in an MS-OVBA container")
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# [MS-CFB] compound files
# ---------------------------------------------------------------------------------------------

_CFB_SIGNATURE = bytes.fromhex("D0CF11E0A1B11AE1")
_FREESECT, _ENDOFCHAIN, _FATSECT = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD
_NOSTREAM = 0xFFFFFFFF
_MINI_CUTOFF = 4096
_SECTOR = 512
_MINI = 64


def read_cfb(data: bytes) -> dict[str, bytes]:
    """All streams of a compound file as ``{"Storage/Stream": bytes}``."""
    if data[:8] != _CFB_SIGNATURE:
        raise ValueError("not a compound file (OLE signature missing)")
    major = struct.unpack_from("<H", data, 0x1A)[0]
    ssz = 1 << struct.unpack_from("<H", data, 0x1E)[0]
    msz = 1 << struct.unpack_from("<H", data, 0x20)[0]
    first_dir, _, cutoff, first_minifat, _, first_difat, n_difat = struct.unpack_from(
        "<IIIIIII", data, 0x30
    )

    def sector(i: int) -> bytes:
        return data[(i + 1) * ssz : (i + 2) * ssz]

    fat_sectors = [s for s in struct.unpack_from("<109I", data, 0x4C) if s < _FATSECT]
    nxt = first_difat
    for _ in range(n_difat):
        entries = struct.unpack(f"<{ssz // 4}I", sector(nxt))
        fat_sectors += [s for s in entries[:-1] if s < _FATSECT]
        nxt = entries[-1]
    fat = [v for s in fat_sectors for v in struct.unpack(f"<{ssz // 4}I", sector(s))]

    def chain(start: int, table: list[int]) -> list[int]:
        out: list[int] = []
        while start < _FATSECT:
            if start >= len(table) or len(out) > len(table):
                raise ValueError("broken sector chain")
            out.append(start)
            start = table[start]
        return out

    directory = b"".join(sector(s) for s in chain(first_dir, fat))
    entries = [directory[i : i + 128] for i in range(0, len(directory), 128)]

    def entry(i: int) -> tuple[str, int, int, int, int, int, int]:
        raw = entries[i]
        name_len = struct.unpack_from("<H", raw, 64)[0]
        name = raw[: max(name_len - 2, 0)].decode("utf-16-le")
        kind = raw[66]
        left, right, child = struct.unpack_from("<III", raw, 68)
        start, size = struct.unpack_from("<IQ", raw, 116)
        if major == 3:
            size &= 0xFFFFFFFF  # v3 writers may leave garbage in the high half
        return name, kind, left, right, child, start, size

    root = entry(0)
    mini_stream = b"".join(sector(s) for s in chain(root[5], fat))
    minifat = [
        v for s in chain(first_minifat, fat) for v in struct.unpack(f"<{ssz // 4}I", sector(s))
    ]

    def read(start: int, size: int) -> bytes:
        if size < cutoff:
            raw = b"".join(mini_stream[s * msz : (s + 1) * msz] for s in chain(start, minifat))
        else:
            raw = b"".join(sector(s) for s in chain(start, fat))
        return raw[:size]

    streams: dict[str, bytes] = {}

    def walk(i: int, prefix: str, seen: set[int]) -> None:
        if i == _NOSTREAM or i in seen:
            return
        seen.add(i)
        name, kind, left, right, child, start, size = entry(i)
        walk(left, prefix, seen)
        if kind == 2:
            streams[prefix + name] = read(start, size)
        elif kind == 1:
            walk(child, prefix + name + "/", seen)
        walk(right, prefix, seen)

    walk(root[4], "", set())
    return streams


def _cfb_key(name: str) -> tuple[int, str]:
    # [MS-CFB] 2.6.4: siblings sort by name length first, then by upper-cased name
    return (len(name), name.upper())


@dataclass
class _Node:
    name: str
    data: bytes | None = None  # None: a storage
    children: dict[str, _Node] = field(default_factory=dict)
    sid: int = 0
    left: int = _NOSTREAM
    right: int = _NOSTREAM
    child: int = _NOSTREAM
    black: bool = True
    start: int = _ENDOFCHAIN


def _tree(nodes: list[_Node]) -> int:
    """Link siblings into a balanced binary tree, coloured as a valid red-black tree.

    Median splits fill every level but the deepest; colouring that level red (when it is not
    full) keeps the black height equal on all paths, as [MS-CFB] 2.6.4 requires.
    """
    nodes = sorted(nodes, key=lambda n: _cfb_key(n.name))
    depth_of: dict[int, int] = {}

    def build(lo: int, hi: int, depth: int) -> int:
        if lo >= hi:
            return _NOSTREAM
        mid = (lo + hi) // 2
        node = nodes[mid]
        depth_of[id(node)] = depth
        node.left = build(lo, mid, depth + 1)
        node.right = build(mid + 1, hi, depth + 1)
        return node.sid

    root = build(0, len(nodes), 0)
    if nodes:
        deepest = max(depth_of.values())
        full = len(nodes) == (1 << (deepest + 1)) - 1
        for node in nodes:
            node.black = full or depth_of[id(node)] < deepest
    return root


def write_cfb(streams: dict[str, bytes]) -> bytes:
    """A version-3 compound file holding ``{"Storage/Stream": bytes}`` (one storage level deep
    or more); deterministic: no timestamps, no CLSIDs."""
    root = _Node("Root Entry")
    for path, data in streams.items():
        *dirs, name = path.split("/")
        node = root
        for d in dirs:
            node = node.children.setdefault(d, _Node(d))
        node.children[name] = _Node(name, data)

    order: list[_Node] = []

    def number(node: _Node) -> None:
        node.sid = len(order)
        order.append(node)
        for child in node.children.values():
            number(child)

    number(root)

    def link(node: _Node) -> None:
        if node.data is None:
            node.child = _tree(list(node.children.values()))
            for child in node.children.values():
                link(child)

    link(root)

    # Small streams live in the mini stream (64-byte sectors), the rest in 512-byte sectors.
    mini = bytearray()
    minifat: list[int] = []
    big: list[_Node] = []
    for node in order:
        if node.data is None:
            continue
        if len(node.data) < _MINI_CUTOFF:
            if not node.data:
                node.start = _ENDOFCHAIN
                continue
            count = -(-len(node.data) // _MINI)
            node.start = len(minifat)
            minifat += [node.start + i + 1 for i in range(count - 1)] + [_ENDOFCHAIN]
            mini += node.data.ljust(count * _MINI, b"\0")
        else:
            big.append(node)

    sectors: list[bytes] = []
    fat: list[int] = []

    def allocate(payload: bytes) -> int:
        count = max(-(-len(payload) // _SECTOR), 1)
        first = len(sectors)
        for i in range(count):
            sectors.append(payload[i * _SECTOR : (i + 1) * _SECTOR].ljust(_SECTOR, b"\0"))
            fat.append(first + i + 1 if i < count - 1 else _ENDOFCHAIN)
        return first

    for node in big:
        node.start = allocate(node.data or b"")
    root.start = allocate(bytes(mini)) if mini else _ENDOFCHAIN
    if minifat:
        raw = struct.pack(f"<{len(minifat)}I", *minifat)
        first_minifat = allocate(raw.ljust(-(-len(raw) // _SECTOR) * _SECTOR, b"\xff"))
        n_minifat = -(-len(raw) // _SECTOR)
    else:
        first_minifat, n_minifat = _ENDOFCHAIN, 0

    entries = bytearray()
    for node in order:
        name = node.name.encode("utf-16-le")
        if len(name) > 62:
            raise ValueError(f"stream name too long: {node.name}")
        kind = 5 if node is root else (1 if node.data is None else 2)
        size = len(mini) if node is root else len(node.data or b"")
        entries += name.ljust(64, b"\0")
        entries += struct.pack("<HBB", len(name) + 2, kind, 1 if node.black else 0)
        entries += struct.pack("<III", node.left, node.right, node.child)
        entries += b"\0" * 16 + b"\0" * 4 + b"\0" * 16  # CLSID, state bits, times
        start = node.start if (node.data is not None or node is root) else 0
        entries += struct.pack("<IQ", start, size)
    while len(entries) % _SECTOR:  # unused entries: empty name, no siblings/children
        entries += b"\0" * 66 + b"\0\0" + struct.pack("<III", *(3 * [_NOSTREAM])) + b"\0" * 48
    first_dir = allocate(bytes(entries))

    # The FAT must also map its own sectors: grow until it covers everything.
    per_sector = _SECTOR // 4
    n_fat = 1
    while len(sectors) + n_fat > n_fat * per_sector:
        n_fat += 1
    if n_fat > 109:
        raise ValueError("compound file too large for this writer (needs DIFAT sectors)")
    fat_ids = list(range(len(sectors), len(sectors) + n_fat))
    fat += [_FATSECT] * n_fat
    fat += [_FREESECT] * (n_fat * per_sector - len(fat))
    fat_raw = struct.pack(f"<{len(fat)}I", *fat)
    for i in range(n_fat):
        sectors.append(fat_raw[i * _SECTOR : (i + 1) * _SECTOR])

    header = bytearray(_CFB_SIGNATURE + b"\0" * 16)
    header += struct.pack("<HHHHH", 0x003E, 0x0003, 0xFFFE, 9, 6) + b"\0" * 6
    header += struct.pack(
        "<IIIIIIIII",
        0,  # directory sectors (always 0 for version 3)
        n_fat,
        first_dir,
        0,  # transaction signature
        _MINI_CUTOFF,
        first_minifat,
        n_minifat,
        _ENDOFCHAIN,  # first DIFAT sector: none
        0,  # DIFAT sectors
    )
    header += struct.pack("<109I", *(fat_ids + [_FREESECT] * (109 - n_fat)))
    return bytes(header) + b"".join(sectors)


# ---------------------------------------------------------------------------------------------
# [MS-OVBA] 2.3 the VBA project
# ---------------------------------------------------------------------------------------------

STD, CLASS, DOCUMENT = "std", "class", "document"


@dataclass
class Module:
    name: str
    kind: str  # STD | CLASS | DOCUMENT
    source: str  # full text, "Attribute ..." lines included, CRLF line ends
    docstring: bytes = b""  # MODULEDOCSTRING, kept as found
    docstring_unicode: bytes = b""


@dataclass
class Project:
    name: str
    codepage: int
    info: bytes  # dir stream records before PROJECTMODULES, PROJECTNAME excluded
    modules: list[Module]
    project_text: str  # PROJECT stream as read (ID, protection state, host extenders)

    def module(self, name: str) -> Module:
        for mod in self.modules:
            if mod.name.lower() == name.lower():
                return mod
        raise KeyError(name)


def _records(data: bytes) -> Iterable[tuple[int, bytes, bytes]]:
    """(id, payload, raw bytes) of each dir stream record ([MS-OVBA] 2.3.4.2)."""
    pos = 0
    while pos + 6 <= len(data):
        rid, size = struct.unpack_from("<HI", data, pos)
        if rid == 0x0009:  # PROJECTVERSION: its "size" field is a constant 4, payload is 6
            size = 6
        raw = data[pos : pos + 6 + size]
        yield rid, data[pos + 6 : pos + 6 + size], raw
        pos += 6 + size


def _codec(codepage: int) -> str:
    return "utf-8" if codepage == 65001 else f"cp{codepage}"


def read_project(vba_bin: bytes) -> Project:
    """Parse ``vbaProject.bin``: project information records and every module's source."""
    streams = read_cfb(vba_bin)
    dir_data = decompress(streams["VBA/dir"])
    info = bytearray()
    codepage = 1252
    name = ""
    modules_raw: list[dict[int, bytes]] = []
    current: dict[int, bytes] | None = None
    in_modules = False
    for rid, payload, raw in _records(dir_data):
        if not in_modules:
            if rid == 0x000F:
                in_modules = True
            elif rid == 0x0003:
                codepage = struct.unpack("<H", payload)[0]
                info += raw
            elif rid == 0x0004:
                name = payload.decode(_codec(codepage))
            else:
                info += raw
            continue
        if rid == 0x0019:  # MODULENAME starts a module
            current = {}
            modules_raw.append(current)
        if current is not None and rid not in current:
            current[rid] = payload
        if rid == 0x002B:  # module terminator
            current = None
    codec = _codec(codepage)
    modules: list[Module] = []
    for rec in modules_raw:
        mod_name = rec[0x0019].decode(codec)
        stream = rec.get(0x001A, rec[0x0019]).decode(codec)
        offset = struct.unpack("<I", rec.get(0x0031, b"\0\0\0\0"))[0]
        text = decompress(streams["VBA/" + stream][offset:]).decode(codec)
        modules.append(
            Module(
                name=mod_name,
                kind=STD if 0x0021 in rec else CLASS,
                source=text,
                docstring=rec.get(0x001C, b""),
                docstring_unicode=rec.get(0x0048, b""),
            )
        )
    project_text = streams["PROJECT"].decode(codec)
    documents = set(re.findall(r"^Document=([^/\r\n]+)/", project_text, re.M))
    for mod in modules:
        if mod.name in documents:
            mod.kind = DOCUMENT
    return Project(name, codepage, bytes(info), modules, project_text)


def _record(rid: int, payload: bytes) -> bytes:
    return struct.pack("<HI", rid, len(payload)) + payload


def _dir_stream(project: Project) -> bytes:
    codec = _codec(project.codepage)
    out = bytearray()
    # PROJECTNAME sits right after PROJECTCODEPAGE ([MS-OVBA] 2.3.4.2.1).
    for rid, _payload, raw in _records(project.info):
        out += raw
        if rid == 0x0003:
            out += _record(0x0004, project.name.encode(codec))
    out += _record(0x000F, struct.pack("<H", len(project.modules)))
    out += _record(0x0013, struct.pack("<H", 0xFFFF))  # PROJECTCOOKIE
    for mod in project.modules:
        name = mod.name.encode(codec)
        uname = mod.name.encode("utf-16-le")
        out += _record(0x0019, name)
        out += _record(0x0047, uname)
        out += _record(0x001A, name) + _record(0x0032, uname)  # stream name = module name
        out += _record(0x001C, mod.docstring) + _record(0x0048, mod.docstring_unicode)
        out += _record(0x0031, struct.pack("<I", 0))  # source starts at 0: no p-code
        out += _record(0x001E, struct.pack("<I", 0))  # help context
        out += _record(0x002C, struct.pack("<H", 0xFFFF))  # cookie
        out += _record(0x0021 if mod.kind == STD else 0x0022, b"")
        out += _record(0x002B, b"")
    out += _record(0x0010, b"")
    return bytes(out)


def _project_stream(project: Project) -> str:
    """The PROJECT text stream ([MS-OVBA] 2.3.1) with module lists made to match."""
    head, _, rest = project.project_text.partition("\r\n[")
    lines = [ln for ln in head.split("\r\n") if ln]
    keep = [
        ln
        for ln in lines
        if not re.match(r"(Document|Module|Class|BaseClass|Package)=", ln)
        and not ln.startswith("Name=")
    ]
    ident = [ln for ln in keep if ln.startswith("ID=")]
    others = [ln for ln in keep if not ln.startswith("ID=")]
    mods = []
    for mod in project.modules:
        if mod.kind == DOCUMENT:
            mods.append(f"Document={mod.name}/&H00000000")
        elif mod.kind == CLASS:
            mods.append(f"Class={mod.name}")
        else:
            mods.append(f"Module={mod.name}")
    props = ident + mods + [f'Name="{project.name}"'] + others
    sections = ("[" + rest) if rest else ""
    host = ""
    for block in sections.split("\r\n\r\n"):
        if block.startswith("[Host Extender Info]"):
            host = block.strip("\r\n") + "\r\n\r\n"
    workspace = "[Workspace]\r\n" + "".join(f"{m.name}=0, 0, 0, 0, C\r\n" for m in project.modules)
    return "\r\n".join(props) + "\r\n\r\n" + host + workspace


def write_project(project: Project) -> bytes:
    """Serialise to ``vbaProject.bin`` (source only; see the module docstring)."""
    codec = _codec(project.codepage)
    names = [m.name.lower() for m in project.modules]
    if len(set(names)) != len(names):
        raise ValueError("duplicate module names")
    streams: dict[str, bytes] = {
        "PROJECT": _project_stream(project).encode(codec),
        "PROJECTwm": b"".join(
            m.name.encode(codec) + b"\0" + m.name.encode("utf-16-le") + b"\0\0"
            for m in project.modules
        )
        + b"\0\0",
        # Reserved1 0x61CC, Version 0xFFFF (= no cache), Reserved2 0x00, Reserved3 0x0000
        "VBA/_VBA_PROJECT": struct.pack("<HHBH", 0x61CC, 0xFFFF, 0x00, 0x0000),
        "VBA/dir": compress(_dir_stream(project)),
    }
    for mod in project.modules:
        source = mod.source.replace("\r\n", "\n").replace("\n", "\r\n")
        streams["VBA/" + mod.name] = compress(source.encode(codec))
    return write_cfb(streams)


def module_from_bas(text: str, name: str) -> Module:
    """A standard module from exported ``.bas`` text; its ``Attribute VB_Name`` is set to
    ``name`` (the first line, as the VBA editor writes it)."""
    body = text.replace("\r\n", "\n").lstrip("\ufeff")
    body = re.sub(r'^Attribute VB_Name = "[^"]*"\n', "", body, count=1)
    source = f'Attribute VB_Name = "{name}"\n' + body
    return Module(name=name, kind=STD, source=source.replace("\n", "\r\n"))
