"""Run directories, configurations and errors under misuse: one writer per directory (real
concurrent processes), launches that die with their launcher, refused changed
configurations, ``--config`` honoured, strict values, truncated histories, damaged
checkpoints and OS errors as one line, user problems the library cannot handle refused or
warned about up front.

In-process runs share one small configuration (the 2×2 quadratic, N²SBA, 2 seeds), so they
share one compiled program; real processes only where processes or signals are the point.
Two such tests live with their topic, on another xdist worker: two concurrent ``--resume``
(tests/test_locks.py) and SIGTERM to ``htbo run`` (tests/test_cli.py).
"""
from __future__ import annotations

import builtins
import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from htbo.cli import main
from htbo.history import read_jsonl
from htbo.plan import Entry, Plan

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
SMALL = ["--problem", "quadratic", "--problem-arg", "dim_x=2", "--problem-arg", "dim_y=2",
         "--seeds", "2", "--no-progress"]


def _run(out, *extra, steps=40, n_evals=2):
    return main(["run", *SMALL, "--steps", str(steps), "--n-evals", str(n_evals),
                 "--out", str(out), *extra])


def _rows(d):
    return read_jsonl(str(Path(d) / "history.jsonl"))


def _err_line(capsys) -> str:
    """The one line a failed command printed on stderr."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _files(d) -> dict:
    """Every file of a run directory but its lock, with its bytes."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(Path(d).rglob("*"))
            if p.is_file() and p.name != ".htbo-lock"}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def _wait(pred, what: str, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _write_plan(d: Path, **kw) -> None:
    plan = Plan(**{"problem": "quadratic", "problem_args": {"dim_x": 2, "dim_y": 2},
                   "budget": None, "seeds": 2, "entries": [Entry("n2sba", "n2sba")], **kw})
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(plan.to_dict()))


# -- 2. and 8. launch is a run; its agents die with it -------------------------------------------
def test_second_launch_is_refused_and_agents_die_with_a_killed_launcher(tmp_path, capsys):
    """A second ``htbo launch`` into a directory a launch is writing exits 2 naming the first
    launcher; SIGKILL of that launcher leaves no agent process within seconds; ``htbo run
    --resume`` on a launch directory is refused (a launch continues distributed)."""
    d = tmp_path / "launch"
    argv = [sys.executable, "-m", "htbo.cli", "launch", "--problem", "quadratic", "--solver",
            "dnsvrb", "--network", "ring:2", "--noise", "none", "--steps", str(10**8),
            "--n-evals", str(10**5), "--seeds", "1", "--heartbeat", "5", "--timeout", "300",
            "--no-progress", "--out", str(d)]
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    logs = [d / "logs" / f"agent-{k}.log" for k in range(2)]
    pids, second = [], None
    try:
        def agent_pids():
            assert first.poll() is None, "the launch ended early"
            text = [log.read_text() if log.exists() else "" for log in logs]
            if all(" pid " in t for t in text):
                return [int(t.split(" pid ", 1)[1].split(":", 1)[0]) for t in text]
        _wait(lambda: (d / "config.json").exists(), "the first launch to claim the directory")
        second = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, env=ENV)
        pids = _wait(agent_pids, "both agents to start")
        err = second.communicate(timeout=120)[1].strip().splitlines()
        assert second.returncode == 2 and len(err) == 1, err
        assert f"PID {first.pid}" in err[0] and "in use by another htbo process" in err[0]
        assert first.poll() is None and all(_alive(p) for p in pids)
        first.send_signal(signal.SIGKILL)
        first.wait()
        t0 = time.monotonic()
        _wait(lambda: not any(_alive(p) for p in pids), "the agents to end", timeout=10)
        assert time.monotonic() - t0 < 5
        ps = subprocess.run(["ps", "-eo", "pid,stat"], capture_output=True, text=True).stdout
        live = {int(a) for a, st in (ln.split()[:2] for ln in ps.splitlines()[1:])
                if not st.startswith("Z")}
        assert not live & set(pids), ps
    finally:  # never leave our processes behind, whatever failed above
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
    assert main(["run", "--resume", str(d), "--no-progress"]) == 2
    assert f"htbo launch --resume {d}" in _err_line(capsys)


# -- 3. a changed configuration is refused ---------------------------------------------------
@pytest.mark.parametrize("edit, field", [
    (lambda c: c["entries"][0]["hp"].update(eta=0.3), "hparams.eta: 0.05 then, 0.3 now"),
    (lambda c: c["entries"][0].update(solver="soba"), 'solver: "n2sba" then, "soba" now'),
    (lambda c: c.update(seeds=[0, 2]), "seeds: [0, 1] then, [0, 2] now"),
    (lambda c: c["entries"][0].update(label="other"), "no longer has the solver 'n2sba'"),
])
def test_resume_refuses_a_changed_configuration_naming_the_field(tmp_path, capsys, edit,
                                                                   field):
    d = tmp_path / "r"
    assert _run(d, "--hp", "eta=0.05") == 0
    cfg = json.loads((d / "config.json").read_text())
    edit(cfg)
    (d / "config.json").write_text(json.dumps(cfg))
    before = _files(d)
    capsys.readouterr()
    assert main(["run", "--resume", str(d), "--no-progress"]) == 2
    line = _err_line(capsys)
    assert field in line and "restore config.json" in line, line
    assert _files(d) == before  # nothing written


# -- 4. and 5. --config keeps the tuned run's settings ------------------------------------------
def test_config_keeps_problem_noise_budget_and_seeds_flags_override_one_field(tmp_path,
                                                                              capsys):
    pargs = {"n_inner": 64, "n_outer": 64, "dim_x": 2, "dim_y": 2}
    best = tmp_path / "best.json"
    best.write_text(json.dumps(dict(
        solver="soba", label="soba (tuned)", hp={"eta": 0.01}, problem="quadratic-data",
        problem_args=pargs, noise="none", network=None, metric="grad_norm", budget=3000,
        steps=None, seeds=[3, 5], hvp_cost=0.0)))

    def check(out, seeds, budget, labels):  # the rows, the records and the printed settings
        rows = _rows(out)
        assert {r["problem"] for r in rows} == {"quadratic-data"}
        assert {r["noise"] for r in rows} == {"none"}
        assert {r["seed"] for r in rows} == set(seeds)
        assert {r["label"] for r in rows} == labels
        for rec in read_jsonl(str(out / "runs.jsonl")):
            assert rec["problem_args"] == pargs
            assert budget - rec["sfo_per_step"] < max(r["sfo"] for r in rows) <= budget
        err = capsys.readouterr().err
        assert f"x 2 seeds {seeds} (" in err
        assert "on quadratic-data(n_inner=64, n_outer=64, dim_x=2, dim_y=2), noise none" in err
    common = ["--n-evals", "2", "--no-progress"]
    assert main(["run", "--config", str(best), "--out", str(tmp_path / "a"), *common]) == 0
    check(tmp_path / "a", [3, 5], 3000, {"soba (tuned)"})
    assert read_jsonl(str(tmp_path / "a" / "runs.jsonl"))[0]["hparams"]["eta"] == 0.01
    assert main(["run", "--config", str(best), "--seeds", "7,8", "--out",
                 str(tmp_path / "b"), *common]) == 0
    check(tmp_path / "b", [7, 8], 3000, {"soba (tuned)"})
    assert main(["compare", "--config", str(best), "--solvers", "soba", "--out",
                 str(tmp_path / "c"), *common]) == 0
    check(tmp_path / "c", [3, 5], 3000, {"soba", "soba (tuned)"})
    assert main(["compare", "--config", str(best), "--solvers", "soba", "--budget", "2000",
                 "--out", str(tmp_path / "d"), *common]) == 0
    check(tmp_path / "d", [3, 5], 2000, {"soba", "soba (tuned)"})


# -- 6. strict values -----------------------------------------------------------------------
def test_booleans_integers_and_problem_arguments_are_strict(tmp_path, capsys):
    from htbo.parsing import int_like, parse_value
    from htbo.plan import check_problem_args
    from htbo.solvers import make_solver
    for text, want in [("true", True), ("yes", True), ("1", True), ("false", False),
                       ("no", False), ("0", False)]:
        assert make_solver("n2sba", shared_samples=parse_value(text)).hparams[
            "shared_samples"] is want, text
    for text in ("off", "on", "2", "0.5", "maybe"):
        with pytest.raises(ValueError, match=r"shared_samples must be true or false"):
            make_solver("n2sba", shared_samples=parse_value(text))
    assert main(["run", *SMALL, "--steps", "5", "--hp", "shared_samples=off",
                 "--out", str(tmp_path / "x")]) == 2
    assert "shared_samples must be true or false" in _err_line(capsys)
    assert not (tmp_path / "x").exists()
    assert int_like("1e5") == 100_000 and int_like("100_000") == 100_000
    for bad in ("1.5", "1e-1", "ten"):
        with pytest.raises(Exception, match="expected an integer"):
            int_like(bad)

    def factory(n: int = 3, scale: float = 1.0, exact: bool = False, name: str = "a"):
        pass
    assert check_problem_args(factory, {"n": 1e1, "scale": 2, "exact": 1, "name": 5}, "p") \
        == {"n": 10, "scale": 2, "exact": True, "name": "5"}
    assert check_problem_args(factory, {"exact": parse_value("no")}, "p") == {"exact": False}
    for args, msg in [({"exact": "off"}, "argument exact must be true or false"),
                      ({"exact": 2}, "argument exact must be true or false"),
                      ({"n": 2.5}, "argument n must be an integer"),
                      ({"scale": "abc"}, "argument scale must be a number"),
                      ({"bogus": 1}, "unknown argument 'bogus'")]:
        with pytest.raises(ValueError, match=msg):
            check_problem_args(factory, args, "p")


# -- 9. experiment cell locks ---------------------------------------------------------------
def test_experiment_cell_lock_only_a_live_holder_skips_the_cell(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    import protocol
    cell = protocol.Cell(exp="E1", problem="p", noise="n",
                         method=protocol.Method("M", "n2sba", 0.1), spec={}, budget=10,
                         seeds=1, eval_seeds=1)
    path = Path(protocol.cell_path(str(tmp_path), cell) + ".lock")
    path.parent.mkdir(parents=True)
    unrelated = os.getppid()  # a live process that holds no lock
    for content in ("", "0", str(unrelated), json.dumps({"pid": unrelated, "start_time": 1})):
        path.write_text(content)
        lock = protocol.claim(str(tmp_path), cell)
        assert lock is not None, f"a lock file holding {content!r} made the cell skip"
        assert protocol.claim(str(tmp_path), cell) is None  # while it is held: skipped
        lock.release()
        assert not path.exists()


# -- 10. truncated history ------------------------------------------------------------------
def test_truncated_last_row_is_rewritten_by_resume_and_plot_counts_skipped_lines(tmp_path,
                                                                                 capsys):
    d = tmp_path / "t"
    assert _run(d) == 0
    whole = {(r["seed"], r["step"]): r["grad_norm"] for r in _rows(d)}
    lines = (d / "history.jsonl").read_text().splitlines(keepends=True)
    (d / "history.jsonl").write_text("".join(lines[:-1]) + lines[-1][:40] + "\n{garbage\n")
    capsys.readouterr()
    assert main(["plot", str(d)]) == 0
    assert "skipped 2 unreadable line(s)" in capsys.readouterr().err
    assert main(["run", "--resume", str(d), "--no-progress"]) == 0
    assert "resuming at step 40" in capsys.readouterr().err
    again = {(r["seed"], r["step"]): r["grad_norm"] for r in _rows(d)}
    assert again == whole and len(_rows(d)) == len(lines)


# -- 11. a nonconvex lower level ---------------------------------------------------------------
def _mlp_problem(**kw):
    """Lower level: a one-hidden-layer tanh network fitted by least squares (nonconvex in its
    weights y); upper level: the validation loss, x a log-scale of the targets."""
    from htbo.problems import BilevelProblem
    rng = np.random.default_rng(0)
    a = rng.standard_normal((32, 3)).astype(np.float32)
    t = np.sin(a @ np.ones(3, np.float32))

    def net(y, a):
        return jnp.tanh(a @ y["w1"]) @ y["w2"]

    def g(x, y, b):
        return jnp.mean((net(y, b["a"]) - jnp.exp(x[0]) * b["t"]) ** 2)

    def f(x, y, b):
        return jnp.mean((net(y, b["a"]) - b["t"]) ** 2) + 0.1 * jnp.sum(x ** 2)
    y0 = {"w1": jnp.asarray(rng.standard_normal((3, 4)), jnp.float32),
          "w2": jnp.zeros(4, jnp.float32)}
    data = {"a": a, "t": t}
    return BilevelProblem(f=f, g=g, x0=jnp.zeros(1), y0=y0, data_f=data, data_g=data,
                          **{"name": "user-mlp", **kw})


def test_nonconvex_lower_level_warns_once_and_names_the_trait(monkeypatch):
    import htbo
    import htbo.driver
    from htbo.metrics import NonconvexLowerLevelWarning, check_lower_curvature, curvature_watch
    from htbo.solvers import make_solver
    p = _mlp_problem()

    def cheap_evaluate(problem, x, y, **options):  # (L-BFGS + CG would compile for seconds)
        return {"grad_norm": optax_norm(x)}
    from optax.tree import norm as optax_norm
    monkeypatch.setattr(htbo.driver, "evaluate", cheap_evaluate)  # the default metrics
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        htbo.run(p, make_solver("n2sba"), steps=6, seeds=[0, 1], n_evals=3)
    ours = [w for w in caught if issubclass(w.category, NonconvexLowerLevelWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]  # once, not per evaluation
    assert "'user-mlp'" in str(ours[0].message) and "hypergradient=False" in \
        str(ours[0].message)
    # the same check at a convex lower level (a linear model: ∇²g ⪰ 0) finds nothing
    lin = _mlp_problem(name="user-linear").replace(
        g=lambda x, y, b: jnp.mean((b["a"] @ y["w"] - jnp.exp(x[0]) * b["t"]) ** 2),
        y0={"w": jnp.zeros(3)})
    assert check_lower_curvature(lin, lin.x0, lin.y0) is None
    # the trait turns the evaluation-only hypergradient (and so the check) off
    params = make_solver("n2sba").program()[2]
    assert curvature_watch(_mlp_problem(hypergradient=False), params) is None
    assert curvature_watch(p, params) is not None


# -- 12. OS errors and damaged files are one line ---------------------------------------------
def test_os_errors_and_bad_files_are_one_line(tmp_path, capsys, monkeypatch):
    d = tmp_path / "r"
    assert _run(d) == 0
    capsys.readouterr()
    # a full disk while rows are written: exit 1, one line
    import htbo.history

    class Full(io.StringIO):
        def write(self, s):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with monkeypatch.context() as m:
        m.setattr(htbo.history, "open", lambda *a, **k: Full(), raising=False)
        assert _run(tmp_path / "full") == 1
    line = _err_line(capsys)
    assert "No space left on device (ENOSPC)" in line and "free some space" in line, line

    # a read-only directory (every write under it refused, as chmod does for non-root)
    real_open, real_os_open = builtins.open, os.open

    def deny(path, writing):
        if writing and str(os.path.abspath(path)).startswith(str(d)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    def ro_open(file, mode="r", *a, **k):
        deny(file, isinstance(file, (str, Path)) and any(c in mode for c in "wax+"))
        return real_open(file, mode, *a, **k)

    def ro_os_open(path, flags, *a, **k):
        deny(path, flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        return real_os_open(path, flags, *a, **k)
    with monkeypatch.context() as m:
        m.setattr(builtins, "open", ro_open)
        m.setattr(os, "open", ro_os_open)
        assert main(["run", "--resume", str(d), "--no-progress"]) == 2
        line = _err_line(capsys)
        assert f"--resume {d}: cannot write in it (Permission denied)" in line, line
        assert main(["plot", str(d)]) == 1
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert "plot-grad_norm.png: Permission denied (EACCES)" in line and "--png" in line

    # --resume on a file, --config not a JSON object
    (tmp_path / "file").write_text("x")
    assert main(["run", "--resume", str(tmp_path / "file")]) == 2
    assert "not a run directory (it is a file)" in _err_line(capsys)
    (tmp_path / "list.json").write_text("[1, 2]")
    assert main(["run", "--config", str(tmp_path / "list.json"), "--out", str(tmp_path / "y")]) == 2
    assert "expected a JSON object" in _err_line(capsys)

    # damaged checkpoints of an unfinished run: named, with the remedy; deleting restarts it
    runs = (d / "runs.jsonl").read_text().splitlines(keepends=True)
    (d / "runs.jsonl").write_text(runs[0])  # as if killed: started, never finished
    ck = d / "checkpoints" / "n2sba.npz"
    good = ck.read_bytes()
    import zipfile
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("other.npy", b"")
    for damaged, why in [(good[: len(good) // 2], "not an .npz archive"),
                         (b"\x80\x04garbage", "not an .npz archive"),
                         (zbuf.getvalue(), "KeyError")]:
        ck.write_bytes(damaged)
        assert main(["run", "--resume", str(d), "--no-progress"]) == 2
        line = _err_line(capsys)
        assert f"checkpoint {ck} is damaged ({why}" in line, line
        assert "delete it to restart this solver from step 0" in line
    ck.unlink()
    assert main(["run", "--resume", str(d), "--no-progress"]) == 0
    assert len(_rows(d)) == 2 * 3 and max(r["step"] for r in _rows(d)) == 40


# -- 13. mixed precision ------------------------------------------------------------------------
def test_mixed_precision_is_refused_up_front_naming_the_leaf():
    import htbo
    from htbo.problems import BilevelProblem, validate_problem
    from htbo.solvers import make_solver

    def f(x, y, b):
        return jnp.sum(y ** 2) + jnp.sum(x["u"] ** 2) + jnp.sum(x["v"] ** 2)

    def g(x, y, b):
        return jnp.sum((y - x["u"].sum()) ** 2) + (0.0 if b is None else jnp.mean(b) * y.sum())
    for dt in (jnp.float16, jnp.bfloat16):
        p = BilevelProblem(f=f, g=g, x0={"u": jnp.ones(2), "v": jnp.ones(2, dt)}, y0=jnp.zeros(3))
        with pytest.raises(ValueError, match=rf"x0\['v'\] is {jnp.dtype(dt).name} but "
                                             r"x0\['u'\] is float32"):
            htbo.run(p, make_solver("soba"), steps=2)
    with jax.enable_x64(True):
        x0 = {"u": jnp.ones(2, jnp.float32), "v": jnp.ones(2, jnp.float32)}
        p = BilevelProblem(f=f, g=g, x0=x0, y0=jnp.zeros(3, jnp.float32),
                           data_g=np.ones(8, np.float64))
        with pytest.raises(ValueError, match=r"data_g is float64, wider than the iterates' "
                                             r"float32 \(x0\['u'\]\)"):
            htbo.run(p, make_solver("soba"), steps=2)
        validate_problem(p.replace(data_g=np.ones(8, np.float32)))  # one dtype: fine
        validate_problem(p.replace(data_g=np.ones(8, np.float16)))  # narrower data: fine


# -- 14. module:function from the current directory ---------------------------------------------
def test_problem_factory_imported_from_the_current_directory(tmp_path, monkeypatch):
    mod = f"cwd_problem_{os.getpid()}"
    (tmp_path / f"{mod}.py").write_text(
        "import pathlib\nfrom htbo.problems import PROBLEMS\n"
        "def make(dim=2):\n    pathlib.Path('made').write_text(str(dim))\n"
        "    return PROBLEMS.get('quadratic')(dim_x=dim, dim_y=dim)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    assert main(["run", "--problem", f"{mod}:make", "--problem-arg", "dim=2", "--steps", "10",
                 "--seeds", "2", "--n-evals", "1", "--no-progress", "--out", "o"]) == 0
    assert (tmp_path / "made").read_text() == "2" and len(_rows(tmp_path / "o")) == 4


# -- 15. diagnose --at ------------------------------------------------------------------------
def test_diagnose_at_uses_best_json_label_and_refuses_network_runs(tmp_path, capsys):
    from htbo.jobs import final_iterate
    from htbo.outputs import Checkpoint
    best = tmp_path / "best.json"
    best.write_text(json.dumps(dict(solver="n2sba", label="n2sba (tuned)", hp={"eta": 0.3})))
    d = tmp_path / "c"
    assert main(["compare", *SMALL, "--solvers", "n2sba", "--config", str(best), "--steps",
                 "40", "--n-evals", "2", "--out", str(d)]) == 0
    _, x0, _, where0 = final_iterate(str(d))
    assert where0 == dict(label="n2sba", seed=0, step=40)  # no best.json: the first solver
    (d / "best.json").write_text(best.read_text())
    _, x, _, where = final_iterate(str(d), seed=1)
    assert where == dict(label="n2sba (tuned)", seed=1, step=40)
    from htbo.driver import VmapExecutor
    from htbo.jobs import read_plan
    from htbo.runner import cast_hp
    res = read_plan(str(d)).resolve()
    re_ = res.entries[1]
    ck = Checkpoint(d, "n2sba (tuned)").load(VmapExecutor(
        res.problem, re_.solver, cast_hp(re_.solver.hp, jnp.float32, 2), res.seeds).template())
    want = re_.solver.program()[2](jax.tree_util.tree_map(lambda a: a[1], ck["states"]))[0]
    np.testing.assert_array_equal(np.asarray(x), np.asarray(want))
    assert not np.array_equal(np.asarray(x), np.asarray(x0))
    (d / "best.json").write_text("[1]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        final_iterate(str(d))
    n = tmp_path / "net"
    _write_plan(n, steps=10, network="ring:2", entries=[Entry("dnsvrb", "dnsvrb")])
    capsys.readouterr()
    assert main(["diagnose", "--at", str(n), "--no-progress", "--out", str(tmp_path / "g")]) == 2
    assert "a decentralized run (--network ring:2)" in _err_line(capsys)


# -- 16. resume hints ---------------------------------------------------------------------------
def test_interrupted_tune_does_not_suggest_resume_and_launch_does(tmp_path, capsys,
                                                                   monkeypatch):
    import htbo.tuning
    from htbo.decentralized import launch as launch_mod

    def interrupt(*a, **k):
        raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(htbo.tuning, "tune", interrupt)  # (Ctrl-C during the search)
        rc = main(["tune", *SMALL, "--grid", "eta=0.1,0.2", "--steps", "5",
                   "--out", str(tmp_path / "t")])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 130 and "--resume" not in line and \
        f"start again with --overwrite --out {tmp_path / 't'}" in line, line

    def stopped(*a, **k):
        raise launch_mod.Interrupted("htbo launch: received SIGTERM; stopped all 2 agents",
                                     signal.SIGTERM)
    monkeypatch.setattr(launch_mod, "launch", stopped)
    rc = main(["launch", "--problem", "quadratic", "--network", "ring:2", "--steps", "5",
               "--no-progress", "--out", str(tmp_path / "l")])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 143 and line.startswith("htbo launch: received SIGTERM") and \
        line.endswith(f"continue with: htbo launch --resume {tmp_path / 'l'}"), line


# -- 17. small fixes (SIGTERM: tests/test_cli.py) ------------------------------------------------
def test_small_cli_fixes(tmp_path, capsys, monkeypatch):
    from htbo.cli import build_parser
    assert build_parser().parse_args(["run", "--budget", "1e5"]).budget == 100_000
    assert main(["run", *SMALL, "--problem-arg", "kappa=abc", "--steps", "5", "--out",
                 str(tmp_path / "k")]) == 2
    assert "argument kappa must be a number, got 'abc'" in _err_line(capsys)
    # --overwrite removes the plots of `htbo plot` too
    d = tmp_path / "o"
    assert _run(d) == 0 and main(["plot", str(d), "--metric", "phi"]) == 0
    assert (d / "plot-phi.png").exists()
    assert _run(d, "--overwrite") == 0
    assert not (d / "plot-phi.png").exists()
    # the progress bar starts after compiling (its ETA is not the compile time)
    import tqdm.auto

    import htbo.driver
    events = []
    real_compile = htbo.driver.VmapExecutor.compile

    class Bar:
        def __init__(self, *a, **k):
            events.append("bar")

        def update(self, n):
            pass

        def close(self):
            pass
    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    monkeypatch.setattr(htbo.driver.VmapExecutor, "compile",
                        lambda self, *a: (events.append("compile"), real_compile(self, *a)))
    assert main(["run", *[a for a in SMALL if a != "--no-progress"], "--steps", "40",
                 "--n-evals", "2", "--out", str(tmp_path / "p")]) == 0
    assert events == ["compile", "bar"]
