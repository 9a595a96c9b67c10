"""The experiment driver (experiments/run.py): the whole ``--quick`` sweep (the CI smoke test
of E1-E6), its cells and report, and a second invocation that skips every finished cell."""
import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _driver():
    spec = importlib.util.spec_from_file_location(
        "experiments_run", os.path.join(ROOT, "experiments", "run.py"))
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    return run


def test_quick_sweep_runs_every_experiment_writes_the_report_and_resumes(tmp_path):
    run = _driver()
    out, report = tmp_path / "cells", tmp_path / "results.md"
    argv = ["--quick", "--out", str(out), "--report", str(report)]
    first = run.main(argv)
    assert first["unavailable"] == {}, first["unavailable"]
    ran = first["ran"]
    for e in ("E1", "E2", "E3", "E4", "E5", "E6"):
        assert any(k.startswith(e + "/") and "/probes/" not in k for k in ran), (e, ran)
    # one cell in detail: equal budget, the fair grid (η₀ × {constant, isqrt} × 2nd axis)
    with open(out / "E5/minimax-quadratic/stable_1.5_1/SGDA.json", encoding="utf-8") as fh:
        cell = json.load(fh)
    assert cell["method"] == "SGDA" and cell["budget"] == 4000 and cell["seeds"] == 2
    assert cell["points"] == 4 and len(cell["best"]["finals"]) == 2
    assert {"median", "q20", "q80"} <= set(cell["history"]["grad_norm"])
    assert cell["history"]["sfo"][-1] == cell["sfo"] <= cell["budget"] and cell["hvp"] == 0
    schedules = {t["label"].split("eta=")[1].split(",")[0] for t in cell["table"]}
    assert any(s.startswith("isqrt:") for s in schedules) and \
        any(not s.startswith("isqrt:") for s in schedules), schedules
    # every cell's median metric is a number (or inf when diverged), never the start value
    for k in ran:
        if "/probes/" in k:
            continue
        with open(out / (k + ".json"), encoding="utf-8") as fh:
            c = json.load(fh)
        assert c["history"]["step"][-1] == c["steps"] > 0, k
    text = report.read_text(encoding="utf-8")
    for title in ("## E1", "## E2", "## E3", "## E4", "## E5", "## E6", "## Protocol"):
        assert title in text, title
    assert "No cell of this experiment has finished yet" not in text
    figs = sorted(os.listdir(tmp_path / "figures"))
    assert len(figs) >= 6 and all(f.endswith(".png") for f in figs), figs
    for f in figs:  # every figure linked by the report exists
        assert f"figures/{f}" in text, f
    second = run.main(argv)
    assert second["ran"] == [] and sorted(second["skipped"]) == sorted(ran)
    # a stored cell made under other settings (here: an edited fingerprint) is not reported,
    # is counted as missing, and is run again by the next sweep
    row = "| minimax-quadratic | stable:1.5@1 | SGDA |"
    assert row in text
    path = out / "E5/minimax-quadratic/stable_1.5_1/SGDA.json"
    cell["fingerprint"] = "0" * 12
    path.write_text(json.dumps(cell), encoding="utf-8")
    run.main(argv + ["--report-only"])
    text = report.read_text(encoding="utf-8")
    assert "1 stored cells were made under other settings" in text
    assert row not in text
    third = run.main(argv + ["--only", "E5"])
    assert third["ran"] == ["E5/minimax-quadratic/stable_1.5_1/SGDA"], third["ran"]
