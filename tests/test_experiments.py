"""The experiment driver (experiments/run.py) on one tiny cell: the cell's JSON and the
report are written, and a second invocation skips the finished cell."""
import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_driver_writes_cell_and_report_and_resumes(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "experiments_run", os.path.join(ROOT, "experiments", "run.py"))
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    out, report = tmp_path / "cells", tmp_path / "results.md"
    argv = ["--quick", "--only", "E5", "--filter", "/SGDA", "--out", str(out),
            "--report", str(report)]
    first = run.main(argv)
    assert first["ran"] == ["E5/minimax-quadratic/stable_1.5_1/SGDA"]
    with open(out / (first["ran"][0] + ".json"), encoding="utf-8") as fh:
        cell = json.load(fh)
    assert cell["method"] == "SGDA" and cell["budget"] == 4000 and cell["seeds"] == 2
    assert cell["points"] == 4 and len(cell["best"]["finals"]) == 2   # η₀ × {const, isqrt} × τ
    assert {"median", "q20", "q80"} <= set(cell["history"]["grad_norm"])
    assert cell["history"]["sfo"][-1] == cell["sfo"] and cell["hvp"] == 0
    text = report.read_text(encoding="utf-8")
    assert "## E5: minimax" in text and "SGDA" in text and (tmp_path / "figures").is_dir()
    second = run.main(argv)
    assert second["ran"] == [] and second["skipped"] == first["ran"]
