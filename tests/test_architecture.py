"""The house's rules, checked on the source (docs/architecture.md): imports point down the
layers, no module takes another module's private names, files stay small."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pz_excel"

#: Layer of each folder; a module may import its own layer's folder and lower layers.
RANK = {"protocol": 1, "connector": 2, "xlsx": 2, "crm": 3, "books": 4, "agent": 5,
        "excel": 6, "tools": 6, "team": 6, "cli": 7}
SHARED = {"i18n", "paths", "locks", "signals", "__init__"}  # below every layer
MAX_LINES = 650  # "about 600"


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def place(path: Path) -> tuple[str, int]:
    rel = path.relative_to(PACKAGE)
    if len(rel.parts) == 1:
        stem = rel.stem
        return stem, (0 if stem in SHARED else 8)  # __main__ sits on top
    return rel.parts[0], RANK[rel.parts[0]]


def imported(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "pz_excel":
                out += [f"pz_excel.{a.name}" for a in node.names]
            elif node.module.startswith("pz_excel."):
                out.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import (the house uses absolute ones)")
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("pz_excel.")]
    return out


def test_imports_point_down_the_layers():
    wrong = []
    for path in modules():
        folder, rank = place(path)
        for name in imported(path):
            parts = name.split(".")
            target = parts[1]
            target_rank = RANK.get(target, 0 if target in SHARED else None)
            if target_rank is None:
                continue
            if target_rank > rank or (target_rank == rank and target != folder):
                wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert wrong == []


def test_no_module_takes_another_modules_private_names():
    wrong = []
    for path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pz_excel"):
                wrong += [f"{path.relative_to(PACKAGE)}: {node.module}.{a.name}"
                          for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert wrong == []


def test_files_stay_small():
    big = {str(p.relative_to(PACKAGE)): n for p in modules()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert big == {}
