"""CLI: the README's demo path, compare output files, clear errors for bad input."""
import json
import math
import os
import re

import pytest

from htbo.cli import main, parse_seeds, parse_value
from htbo.history import JsonlWriter, read_jsonl, summarize


def _rows(d):
    return read_jsonl(os.path.join(d, "history.jsonl"))


def test_compare_writes_history_plot_and_table(tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main(["compare", "--problem", "quadratic", "--problem-arg", "dim_x=3",
               "--problem-arg", "dim_y=4", "--solvers", "n2sba,soba", "--noise", "t:2.5",
               "--budget", "3000", "--seeds", "0,1", "--n-evals", "4", "--out", str(out),
               "--no-progress", "--hp", "soba.eta=0.02"])
    assert rc == 0
    rows = _rows(out)
    # 2 solvers x 2 seeds x (1 + 4) evaluation points
    assert len(rows) == 2 * 2 * 5
    assert {r["solver"] for r in rows} == {"n2sba", "soba"}
    for r in rows:
        assert r["noise"] == "t:2.5" and r["sfo"] <= 3000
    # equal budget: each solver's last evaluation spent the budget up to one step's cost
    meta = {m["label"]: m for m in read_jsonl(os.path.join(out, "runs.jsonl"))}
    for s in ("n2sba", "soba"):
        last = max(r["sfo"] for r in rows if r["solver"] == s)
        assert 3000 - meta[s]["sfo_per_step"] < last <= 3000
    assert (out / "plot.png").stat().st_size > 10_000
    table = capsys.readouterr().out
    assert "| n2sba |" in table and "| soba |" in table
    assert all(m["compile_s"] > 0 and m["run_s"] > 0 for m in meta.values())
    # the eta passed on the command line reached the solver
    assert meta["soba"]["hparams"]["eta"] == 0.02


def test_run_reports_divergence_and_keeps_history(tmp_path, capsys):
    out = tmp_path / "div"
    rc = main(["run", "--problem", "quadratic", "--solver", "f2ba", "--hp", "eta=50",
               "--noise", "none", "--steps", "400", "--seeds", "1", "--n-evals", "8",
               "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    m = re.search(r"non-finite \(seed 0 at step (\d+)\)", err)
    assert m, err
    rows = _rows(out)
    assert rows and rows[0]["step"] == 0  # what was done before the blow-up is kept
    # the table, summary.md and the plot's legend mark the failure instead of showing the
    # start as a "final" value
    table = (out / "summary.md").read_text()
    assert f"1/1: seed 0 at step {m.group(1)}" in table and "| inf |" in table


@pytest.mark.parametrize("argv, msg", [
    (["run", "--noise", "cauchy:1"], "unknown noise"),
    (["run", "--noise", "stable:2.5"], "alpha in (1, 2]"),
    (["run", "--solver", "nope"], "unknown solver"),
    (["run", "--problem", "nope"], "unknown problem"),
    (["run", "--hp", "eta=-1"], "eta must be a finite positive"),
    (["run", "--hp", "batch_out=0"], "batch_out must be a positive integer"),
    (["run", "--hp", "bogus=1"], "bad hyperparameters"),
    (["run", "--seeds", "0,0"], "duplicate seeds"),
    (["run", "--steps", "0"], "--steps must be >= 1"),
    (["compare", "--hp", "eta=0.1"], "SOLVER.KEY=VALUE"),
])
def test_bad_cli_input_gives_clear_error(tmp_path, capsys, argv, msg):
    extra = ["--out", str(tmp_path / "x"), "--no-progress"]
    if "--steps" not in argv:
        extra += ["--steps", "5"]
    rc = main(argv + extra)
    assert rc == 2
    assert msg in capsys.readouterr().err


def test_parse_value_and_seeds():
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("true") is True
    s = parse_value("isqrt:0.5:100")
    assert math.isclose(float(s(0)), 0.5) and math.isclose(float(s(300)), 0.25, rel_tol=1e-6)
    lin = parse_value("linear:10:1:15")
    assert float(lin(3)) == 13 and float(lin(100)) == 15
    with pytest.raises(ValueError, match="bad schedule"):
        parse_value("isqrt:a:b")
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("4,9") == [4, 9]
    with pytest.raises(ValueError):
        parse_seeds("0")
    # problem arguments are never schedules: a colon stays in the string
    from htbo.parsing import parse_assignments
    assert parse_assignments(["split=dirichlet:0.3", "n_train=200"], "--problem-arg",
                             schedules=False) == {"split": "dirichlet:0.3", "n_train": 200}
    with pytest.raises(ValueError, match="bad schedule"):
        parse_assignments(["eta=dirichlet:0.3"], "--hp")


def test_history_survives_truncated_line_and_summary_counts_missing_as_inf(tmp_path):
    p = tmp_path / "h.jsonl"
    with JsonlWriter(str(p)) as w:
        w([dict(solver="a", seed=0, step=0, sfo=0, time_s=0.0, grad_norm=4.0),
           dict(solver="a", seed=0, step=10, sfo=100, time_s=0.1, grad_norm=1.0),
           dict(solver="a", seed=1, step=10, sfo=100, time_s=0.1, grad_norm=None)])
    with open(p, "a") as fh:
        fh.write('{"solver": "a", "seed": 2, "st')  # a crash mid-write
    rows = read_jsonl(str(p))
    assert len(rows) == 3
    (s,) = summarize(rows)
    # seed 1's missing final value counts as a failure (inf), never silently dropped
    assert s["seeds"] == 2 and s["q80"] == math.inf and s["q20"] == 1.0


def test_demo_runs_the_three_solvers_and_writes_results(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--budget", "4000", "--seeds", "2", "--n-evals", "3",
                 "--out", str(out), "--no-progress"]) == 0
    rows = _rows(out)
    assert {r["solver"] for r in rows} == {"n2sba", "f2sa", "clipped-f2sa"}
    assert {r["noise"] for r in rows} == {"stable:1.5"}
    assert (out / "plot.png").exists() and (out / "summary.md").read_text().count("|") > 20


def test_compare_grid_runs_every_point_and_plots_each_solvers_best(tmp_path, capsys):
    out = tmp_path / "grid"
    rc = main(["compare", "--problem", "quadratic", "--problem-arg", "dim_x=3",
               "--problem-arg", "dim_y=3", "--solvers", "soba,f2ba", "--noise", "none",
               "--grid", "soba.eta=0.001,0.05", "--hp", "f2ba.lam=100", "--steps", "300",
               "--seeds", "2", "--n-evals", "2", "--out", str(out), "--no-progress"])
    assert rc == 0
    rows = _rows(out)
    assert {r["label"] for r in rows} == {"soba[eta=0.001]", "soba[eta=0.05]", "f2ba"}
    text = capsys.readouterr().out
    # without noise the larger step is much better after 300 steps; it must be named best
    final = {lab: max((r for r in rows if r["label"] == lab), key=lambda r: r["step"])
             ["grad_norm"] for lab in ("soba[eta=0.001]", "soba[eta=0.05]")}
    assert final["soba[eta=0.05]"] < final["soba[eta=0.001]"]
    assert "best of each solver's grid: f2ba, soba[eta=0.05]" in text
    with pytest.raises(SystemExit):
        main(["run", "--grid", "soba.eta=1"])  # grid is a compare option
    assert main(["compare", "--grid", "eta=1,2", "--steps", "1", "--out", str(out)]) == 2


_SMALL = ["--problem", "quadratic", "--problem-arg", "dim_x=3", "--problem-arg", "dim_y=4",
          "--no-progress", "--n-evals", "2"]


def test_tune_prints_the_ranking_and_best_json_round_trips(tmp_path, capsys):
    out = tmp_path / "t"
    rc = main(["tune", *_SMALL, "--grid", "eta=isqrt:0.03:100,isqrt:0.3:100",
               "--grid", "lam=10,30", "--steps", "60", "--seeds", "2", "--no-extend",
               "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    ranked = re.findall(r"^\s+\d+\. (n2sba\[[^\]]+\]): ([0-9.e+-]+)", text, re.M)
    assert len(ranked) == 4
    best = json.loads((out / "best.json").read_text())
    assert best["from_point"] == ranked[0][0] and best["solver"] == "n2sba"
    assert (out / "plot.png").exists() and "n2sba (defaults)" in (out / "summary.md").read_text()
    # the best point, run again from best.json, reproduces its median
    rc = main(["run", "--config", str(out / "best.json"), "--steps", "60", "--seeds", "2",
               "--n-evals", "2", "--no-progress", "--out", str(tmp_path / "again")])
    assert rc == 0
    (s,) = summarize(_rows(tmp_path / "again"))
    assert s["median"] == pytest.approx(float(ranked[0][1]), rel=1e-3)


@pytest.mark.parametrize("grid, msg", [
    ("eta=0.1,,0.3", "empty value"), ("eta=isqrt:a:b", "--grid eta=isqrt:a:b: bad schedule"),
    ("eta", "must be KEY=V1,V2"), ("bogus=1,2", r"--grid bogus=1,2: n2sba has no hyperparameter 'bogus'"),
    ("eta=0.1,-2", r"n2sba\[eta=-2\]: n2sba: eta must be")])
def test_bad_grid_strings_give_one_line_errors(tmp_path, capsys, grid, msg):
    rc = main(["tune", *_SMALL, "--grid", grid, "--steps", "5", "--out", str(tmp_path / "g")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and re.search(msg, err) and len(err.splitlines()) == 1, err
    assert not (tmp_path / "g").exists()  # nothing written for a command that failed checks


def test_output_directories_are_never_mixed(tmp_path, capsys):
    out = tmp_path / "d"
    base = ["run", *_SMALL, "--steps", "20", "--seeds", "1", "--out", str(out)]
    assert main(base + ["--hp", "eta=0.1"]) == 0
    assert main(base + ["--hp", "eta=0.3"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(base + ["--hp", "eta=0.3", "--overwrite"]) == 0
    meta = read_jsonl(str(out / "runs.jsonl"))
    assert [m["status"] for m in meta] == ["started", "finished"]   # the first run is gone
    assert meta[0]["hparams"] == {"eta": 0.3}                        # JSON values, not repr
    (tmp_path / "file").write_text("x")
    assert main(["run", *_SMALL, "--steps", "5", "--out", str(tmp_path / "file")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["run", *_SMALL, "--steps", "5", "--hp", "eta=-1",
                 "--out", str(tmp_path / "never")]) == 2
    assert not (tmp_path / "never").exists()


def test_plot_with_an_unknown_metric_and_duplicate_solvers_are_errors(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["run", *_SMALL, "--steps", "10", "--seeds", "1", "--out", str(out)]) == 0
    assert main(["plot", str(out), "--metric", "nosuch"]) == 2
    assert "unknown metric 'nosuch'" in capsys.readouterr().err
    assert main(["compare", *_SMALL, "--solvers", "n2sba,n2sba", "--steps", "5",
                 "--out", str(tmp_path / "c")]) == 2
    assert "more than once" in capsys.readouterr().err
    assert main(["run", *_SMALL, "--budget", "10", "--out", str(tmp_path / "b")]) == 2
    assert "give at least 39" in capsys.readouterr().err


def test_problem_as_module_function(tmp_path, monkeypatch):
    (tmp_path / "myprob.py").write_text(
        "from htbo.problems import quadratic\n"
        "def make(dim=3):\n    return quadratic(dim_x=dim, dim_y=dim).replace(name='mine')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "m"
    assert main(["run", "--problem", "myprob:make", "--problem-arg", "dim=2", "--steps", "10",
                 "--seeds", "1", "--n-evals", "1", "--no-progress", "--out", str(out)]) == 0
    assert {r["problem"] for r in _rows(out)} == {"mine"}
    assert main(["run", "--problem", "myprob:nothing", "--steps", "1", "--out",
                 str(tmp_path / "x")]) == 2


def test_a_killed_run_resumes_with_identical_iterates(tmp_path):
    """SIGKILL a run after a few evaluations; --resume finishes it; every evaluation row
    equals the uninterrupted run's, value for value."""
    import signal
    import subprocess
    import sys
    import time
    args = ["run", "--problem", "quadratic", "--noise", "stable:1.5", "--steps", "20000",
            "--seeds", "2", "--n-evals", "40", "--no-progress"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "htbo.cli", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hist = killed / "history.jsonl"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if hist.exists() and len(hist.read_text().splitlines()) >= 8:  # 3+ evaluations
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    rows = read_jsonl(str(hist))
    assert 0 < max(r["step"] for r in rows) < 20000, "the run was not interrupted mid-way"
    assert main(["run", "--resume", str(killed), "--no-progress"]) == 0
    whole = tmp_path / "whole"
    assert main([*args, "--out", str(whole)]) == 0
    a = {(r["seed"], r["step"]): r for r in _rows(killed)}
    b = {(r["seed"], r["step"]): r for r in _rows(whole)}
    assert set(b) <= set(a)
    for k in b:
        assert (a[k]["grad_norm"], a[k]["phi"], a[k]["y_err"]) == \
            (b[k]["grad_norm"], b[k]["phi"], b[k]["y_err"]), k


def test_sigterm_to_run_exits_143_with_resume_hint_and_an_incomplete_summary(tmp_path):
    """SIGTERM while ``htbo run`` computes: exit 143, a last line saying how to continue, and
    a summary.md that marks the solver incomplete at the last step it wrote."""
    import signal
    import subprocess
    import sys
    import time
    d, steps = tmp_path / "s", 10**7
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "src"))
    proc = subprocess.Popen([sys.executable, "-m", "htbo.cli", "run", *_SMALL, "--steps",
                             str(steps), "--n-evals", str(10**4), "--seeds", "2",
                             "--out", str(d)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    hist = d / "history.jsonl"
    try:
        deadline = time.monotonic() + 120
        while not (hist.exists() and any(r["step"] > 0 for r in read_jsonl(str(hist)))):
            assert proc.poll() is None and time.monotonic() < deadline, "no rows past step 0"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1].strip().splitlines()
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err[-1].startswith("htbo: interrupted") and \
        err[-1].endswith(f"continue with: htbo run --resume {d}"), err
    done = max(r["step"] for r in _rows(d))
    assert f"n2sba: incomplete: step {done} of {steps}" in (d / "summary.md").read_text()
