"""``htbo tune``: races, best.json with selection and fresh-seed figures, the tuned entry's
checkpoint, and bad input refused in one line before anything is written."""
import json
import re

import numpy as np
import pytest

from htbo.cli import main
from htbo.history import read_jsonl
from htbo.jobs import final_iterate

_SMALL = ["--problem", "quadratic", "--problem-arg", "dim_x=3", "--problem-arg", "dim_y=4",
          "--no-progress", "--n-evals", "2"]


def _final_median(path, label):
    rows = [r for r in read_jsonl(str(path / "history.jsonl")) if r["label"] == label]
    last = max(r["step"] for r in rows)
    return float(np.median([r["grad_norm"] for r in rows if r["step"] == last])), \
        sorted({r["seed"] for r in rows})


def test_a_race_writes_best_json_with_both_figures_and_a_checkpointed_winner(tmp_path, capsys):
    out = tmp_path / "race"
    rc = main(["tune", *_SMALL, "--solvers", "n2sba,soba", "--grid", "n2sba.eta=0.1,0.3",
               "--grid", "soba.eta=0.01,0.03", "--hp", "soba.rho=0.1", "--hp", "lam=10",
               "--budget", "3000", "--seeds", "2", "--no-extend", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    best = json.loads((out / "best.json").read_text())
    winner = best["solver"]
    assert winner in ("n2sba", "soba") and best["label"] == f"{winner} (tuned)"
    assert best["hvp_cost"] == 1.0 and best["seeds"] == [0, 1] and best["eval_seeds"] == [2, 3]
    assert set(best["race"]) == {"n2sba", "soba"} and best["hp"]["lam" if winner == "n2sba"
                                                                 else "rho"] in (10, 0.1)
    sel, fresh = best["selection"], best["fresh"]
    # the race's winner has the lowest selection median; both figures are printed side by side
    assert sel["median"] == min(r["selection"]["median"] for r in best["race"].values())
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| 1 | {winner} |"))
    assert f"{sel['median']:.4g}" in line and f"{fresh['median']:.4g}" in line
    # the fresh figures are the tuned entry's rows, on the eval seeds only
    med, seeds = _final_median(out, best["label"])
    assert seeds == [2, 3] and med == pytest.approx(fresh["median"], rel=1e-6)
    cfg = json.loads((out / "config.json").read_text())
    assert [e["label"] for e in cfg["entries"]] == ["n2sba", "soba", "n2sba (tuned)",
                                                    "soba (tuned)"]
    assert cfg["search"]["extend"] is False and cfg["hvp_cost"] == 1.0
    problem, x, y, where = final_iterate(str(out))    # diagnose --at reads the winner's state
    assert where["label"] == best["label"] and where["seed"] == 2 and where["step"] > 0
    # run --config reruns the selection; compare --config accepts it
    rc = main(["run", "--config", str(out / "best.json"), "--no-progress", "--n-evals", "2",
               "--out", str(tmp_path / "again")])
    assert rc == 0
    med, seeds = _final_median(tmp_path / "again", best["label"])
    assert seeds == [0, 1] and med == pytest.approx(sel["median"], rel=1e-4)
    assert main(["compare", "--config", str(out / "best.json"), "--no-progress", "--n-evals",
                 "2", "--out", str(tmp_path / "cmp")]) == 0


@pytest.mark.parametrize("argv, msg", [
    (["--solvers", "n2sba,nope"], "unknown solver 'nope'"),
    (["--solvers", "n2sba,soba", "--grid", "f2ba.eta=0.1"],
     r"--grid f2ba.eta=0.1: 'f2ba' is not in the race \(n2sba, soba\)"),
    (["--solvers", "n2sba,soba", "--grid", "soba.lam=1,2"],
     "soba has no hyperparameter 'lam'; it has batch, clip, eta, rho"),
    (["--solvers", "n2sba,soba", "--grid", "eta=0.1"], "in a race, name the solver"),
    (["--grid", "soba.eta=0.1"], r"'soba' is not in the solver being tuned \(n2sba\)"),
    (["--max-rounds", "-1"], "--max-rounds must be >= 0, got -1"),
    (["--seeds", "3", "--eval-seeds", "1,5"], r"disjoint from --seeds; both have \[1\]"),
    (["--solver", "n2sba", "--solvers", "soba"], "not both"),
])
def test_bad_search_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, msg):
    rc = main(["tune", *_SMALL, *argv, "--steps", "5", "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and re.search(msg, err) and len(err.splitlines()) == 1, err
    assert not (tmp_path / "t").exists()


def test_halving_a_one_point_grid_is_a_note_and_a_fully_diverged_search_writes_no_best(
        tmp_path, capsys):
    rc = main(["tune", *_SMALL, "--grid", "eta=0.1", "--halving", "--steps", "20", "--seeds",
               "2", "--out", str(tmp_path / "one")])
    assert rc == 0 and "one point, nothing to halve" in capsys.readouterr().out
    out = tmp_path / "dead"
    rc = main(["tune", *_SMALL, "--noise", "none", "--solver", "f2ba", "--grid", "eta=30,100",
               "--hp", "lam=10", "--steps", "300", "--seeds", "2", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 1 and not (out / "best.json").exists()
    rec = [r for r in read_jsonl(str(out / "runs.jsonl")) if r.get("tune_diverged")][-1]
    first = min(d["step"] for d in rec["tune_diverged"])
    assert len(rec["tune_diverged"]) == 4   # both points, both seeds
    assert f"every point diverged (the first at step {first}:" in text


def test_a_network_race_tunes_decentralized_solvers_per_agent(tmp_path):
    out = tmp_path / "net"
    rc = main(["tune", "--problem", "quadratic", "--network", "ring:4", "--no-progress",
               "--n-evals", "2", "--solvers", "dnsvrb", "--grid", "dnsvrb.eta_x=0.01,0.03",
               "--budget", "120", "--seeds", "1", "--no-extend", "--out", str(out)])
    assert rc == 0
    best = json.loads((out / "best.json").read_text())
    assert best["network"] == "ring:4" and best["label"] == "dnsvrb (tuned)"
    rows = [r for r in read_jsonl(str(out / "history.jsonl")) if r["label"] == best["label"]]
    assert {r["seed"] for r in rows} == {1} and max(r["sfo"] for r in rows) == 120
    assert {"consensus", "comm_rounds", "bytes_sent"} <= set(rows[-1])
