"""``pz-excel bench`` runs without matplotlib and writes its figures to the user's folder
(issue 12): matplotlib is no dependency of pz-excel, and the current directory may be
anywhere when a user runs it."""

from __future__ import annotations

import sys
from pathlib import Path

from bench import bench_sheet
from bench.__main__ import results_dir

LAG = [{"rows": 1000, "lag_p99_s": 0.1, "lag_p50_s": 0.05, "path": "zip-level", "rate": 10,
        "saved": True, "agent": "no Dashboard refresh"}]
SAVES = [{"rows": 1000, "save_p50_s": 0.01, "path": "zip-level", "links": False}]


def test_no_matplotlib_skips_the_plot_with_a_clear_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    said: list[str] = []
    assert bench_sheet.maybe_plot(LAG, SAVES, tmp_path / "p.png", said.append) is False
    assert said == ["plot skipped: matplotlib is not installed (pip install matplotlib) / "
                    "график пропущен: matplotlib не установлен"]
    assert not (tmp_path / "p.png").exists()


def test_with_matplotlib_the_plot_is_written(tmp_path) -> None:
    import pytest

    pytest.importorskip("matplotlib", reason="matplotlib is not installed here")
    said: list[str] = []
    assert bench_sheet.maybe_plot(LAG, SAVES, tmp_path / "p.png", said.append) is True
    assert (tmp_path / "p.png").stat().st_size > 0


def test_figures_go_to_the_users_pz_excel_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PZ_EXCEL_HOME", str(tmp_path / "home"))
    assert results_dir() == Path(tmp_path / "home" / "bench-results")
