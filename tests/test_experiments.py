"""The experiments' quick sweep: every experiment runs a cell through the library's search
and writes its report section; the protocol holds (an axis extended, a structural option
tried, selection and reporting seeds disjoint, E7's transfer and re-tune); a second
invocation skips every finished cell."""
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_quick_sweep_covers_the_protocol_and_resumes(tmp_path):
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import run
        out, rep = tmp_path / "out", tmp_path / "report" / "results.md"
        stats = run.main(["--quick", "--out", str(out), "--report", str(rep)])
        assert stats["ran"] and not stats["busy"]
        cells = [json.loads(p.read_text()) for p in out.rglob("*.json")
                 if "probes" not in p.parts]
        by_exp = {c["exp"] for c in cells}
        assert by_exp == set(run.MODULES), by_exp
        tuned = [c for c in cells if "selection" in c and c["selection"] is not None]
        for c in tuned:  # chosen on some seeds, reported on others
            assert not set(c["selection_seeds"]) & set(c["fresh_seeds"]), c["key"]
            assert len(c["fresh"]["finals"]) == c["eval_seeds"] == len(c["fresh_seeds"])
        assert any(c["extended"] for c in tuned)                      # an axis extended
        labels = " ".join(t["label"] for c in tuned for t in c["table"])
        assert "inner_normalized=True" in labels and "inner_normalized=False" in labels
        kinds = {c["problem"] for c in cells if c["exp"] == "E7"}
        assert {"quadratic transferred", "quadratic re-tuned"} <= kinds
        moved = next(c for c in cells if c["problem"] == "quadratic transferred")
        assert moved["best"]["source"].startswith("E7/quadratic/")
        text = rep.read_text()
        for title in ("E1:", "E2:", "E3:", "E4:", "E5:", "E6:", "E7:"):
            assert f"## {title}" in text
        assert "÷ best re-tuned" in text or "divided by the best re-tuned" in text
        for fig in re.findall(r"\]\((figures/[^)]+)\)", text):
            assert (rep.parent / fig).exists(), fig
        again = run.main(["--quick", "--out", str(out), "--report", str(rep)])
        assert not again["ran"] and len(again["skipped"]) == len(stats["ran"])
    finally:
        sys.path.remove(str(ROOT / "experiments"))
        for m in [m for m in sys.modules if m in (
                "run", "protocol", "report", "methods") or re.match(r"e\d_", m)]:
            del sys.modules[m]
