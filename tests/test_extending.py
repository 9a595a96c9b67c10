"""docs/extending.md's three examples, run as printed: each file registers itself, and the
new solver, noise law and problem then work everywhere (Python, the command line, the
generic checks)."""
import math
import pathlib
import re
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import htbo
from htbo.noise import NOISE_LAWS, parse_noise
from htbo.problems import PROBLEMS, quadratic, quadratic_data, with_noise
from htbo.solvers import SOLVERS, make_solver

DOC = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "extending.md").read_text()


def _example(kind: str, registry, name: str):
    """Execute the ``<!-- example: kind -->`` block as a module; unregister afterwards."""
    code = re.search(rf"<!-- example: {kind} -->\n```python\n(.*?)```", DOC, re.S).group(1)
    mod = types.ModuleType(f"htbo_example_{kind}")
    sys.modules[mod.__name__] = mod  # dataclasses look their module up
    exec(compile(code, f"docs/extending.md ({kind})", "exec"), mod.__dict__)
    return mod, lambda: (registry.unregister(name), sys.modules.pop(mod.__name__))


@pytest.fixture
def ma_soba():
    mod, cleanup = _example("solver", SOLVERS, "ma-soba")
    yield mod
    cleanup()


def test_the_solver_example_converges_counts_its_oracles_and_checks_its_values(ma_soba):
    hp, steps = SOLVERS.meta("ma-soba")["tests"]["noise_free"]
    with jax.enable_x64(True):
        p = quadratic(dim_x=5, dim_y=5, kappa=2.0, dtype=jnp.float64)
        res = htbo.run(p, make_solver("ma-soba", **hp), steps=steps, n_evals=2)
    assert res.rows[0]["grad_norm"] > 5 and res.final()[0] < 1e-3, res.rows
    # oracle accounting: f and g see SFO + HVP samples per step (an HVP evaluates g once)
    seen = []

    def counted(fn):
        def wrapped(x, y, batch):
            jax.debug.callback(lambda n: seen.append(n), batch["u"].shape[0])
            return fn(x, y, batch)
        return wrapped
    q = quadratic_data(n_inner=20, n_outer=20, dim_x=3, dim_y=4)
    q = q.replace(f=counted(q.f), g=counted(q.g))
    s = make_solver("ma-soba", **SOLVERS.meta("ma-soba")["tests"]["small"])
    jax.block_until_ready(jax.jit(s.program()[1])(q, s.start(q, jax.random.key(0)),
                                                  jax.random.key(1)))
    jax.effects_barrier()
    assert sum(seen) == s.sfo_per_step + s.hvp_per_step == 9
    with pytest.raises(ValueError, match=r"ma-soba: momentum beta must be in \[0, 1\)"):
        make_solver("ma-soba", momentum=1.0)
    # momentum is numeric: two values share one compiled program
    assert make_solver("ma-soba", momentum=0.1).program() == make_solver(
        "ma-soba", momentum=0.9).program()


def test_the_noise_example_draws_its_law_and_runs_from_the_command_line(tmp_path):
    _, cleanup = _example("noise", NOISE_LAWS, "laplace")
    try:
        noise = parse_noise("laplace@0.5")
        assert str(noise) == "laplace@0.5" and noise.tail_index == math.inf
        x = np.asarray(noise.sample(jax.random.key(0), jnp.zeros(20_000)))
        assert stats.kstest(x, stats.laplace(scale=0.5).cdf).pvalue > 1e-3
        with pytest.raises(ValueError, match="takes no parameter"):
            parse_noise("laplace:2")
        from htbo.cli import main
        assert main(["run", "--noise", "laplace@0.5", "--problem-arg", "dim_x=3",
                     "--problem-arg", "dim_y=4", "--steps", "20", "--seeds", "2",
                     "--n-evals", "1", "--no-progress", "--out", str(tmp_path)]) == 0
        assert '"noise": "laplace@0.5"' in (tmp_path / "config.json").read_text()
    finally:
        cleanup()


def test_the_problem_example_runs_from_the_command_line_with_checked_arguments(tmp_path,
                                                                              capsys):
    _, cleanup = _example("problem", PROBLEMS, "ridge-toy")
    try:
        from htbo.cli import main
        from htbo.history import read_jsonl
        assert main(["run", "--problem", "ridge-toy", "--problem-arg", "n=300", "--solver",
                     "soba", "--hp", "eta=0.5", "--hp", "rho=0.1", "--steps", "300", "--seeds",
                     "2", "--n-evals", "2", "--no-progress", "--out", str(tmp_path / "r")]) == 0
        rows = read_jsonl(str(tmp_path / "r" / "history.jsonl"))
        start = [r["phi"] for r in rows if r["step"] == 0]
        end = [r["phi"] for r in rows if r["step"] == 300]
        assert rows[0]["noise"] == "none" and max(end) < min(start), (start, end)
        assert main(["run", "--problem", "ridge-toy", "--problem-arg", "n=abc", "--steps", "2",
                     "--out", str(tmp_path / "bad")]) == 2
        assert "argument n must be" in capsys.readouterr().err
        assert PROBLEMS.get("ridge-toy")(n=300) is PROBLEMS.get("ridge-toy")(n=300)  # memoized
        assert with_noise(PROBLEMS.get("ridge-toy")(), "gauss").noise is not None
    finally:
        cleanup()
