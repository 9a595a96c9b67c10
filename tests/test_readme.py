"""The README's promises: its set-up commands are the CI's, its Python example runs, and every
command of its command-line section runs (scaled down) with exit code 0 and real rows."""
import json
import pathlib
import re
import shlex

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

# Scale-down for the test: budgets / 100, steps / 20 (at least 2), 2 seeds, 2 evaluations.
BUDGET_DIV, STEPS_DIV = 100, 20


def test_readme_python_example_runs_and_improves_the_start():
    code = re.findall(r"```python\n(.*?)```", README, re.S)[0]
    ns = {}
    exec(compile(code, "README.md", "exec"), ns)
    res = ns["result"]
    start = np.median([r["grad_norm"] for r in res.rows if r["step"] == 0])
    assert np.median(res.final("grad_norm")) < 0.5 * start


def test_ci_runs_the_readme_install_and_test_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    install = re.search(r"^(pip install [^#\n]*?)\s*#", README, re.M).group(1).strip()
    assert install.replace("pip", "python3 -m pip", 1) in ci
    assert "htbo demo" in README.split("```")[1]
    assert re.search(r"Test command.*`python -m pytest`", README)
    assert "python3 -m pytest" in ci


def readme_commands() -> list[str]:
    """The ``htbo ...`` commands of the README's command-line section, in order."""
    section = README.split("## Command line", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```bash\n(.*?)```", section, re.S)[0]
    block = re.sub(r"\\\n\s*", " ", block)
    cmds = []
    for line in block.splitlines():
        line = line.split("  #", 1)[0].strip()
        if line.startswith("htbo "):
            cmds.append(line)
    return cmds


def _scaled(cmd: str, root: pathlib.Path) -> list[str]:
    argv = shlex.split(cmd)[1:]
    out = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--budget", "--steps", "--seeds") and i + 1 < len(argv):
            v = int(argv[i + 1])
            v = {"--budget": max(1, v // BUDGET_DIV), "--steps": max(2, v // STEPS_DIV),
                 "--seeds": min(v, 2)}[a]
            out += [a, str(v)]
            i += 2
            continue
        out.append(a.replace("runs/", f"{root}/runs/"))
        i += 1
    if out[0] in ("run", "compare", "tune", "launch", "demo") and "--resume" not in out:
        out += ["--n-evals", "2", "--no-progress"]
        if "--seeds" not in out:
            out += ["--seeds", "2"]
        if "--budget" not in out and "--steps" not in out:
            out += ["--budget", str(100_000 // BUDGET_DIV)]
    if out[0] == "diagnose":
        out += ["--n-samples", "1000", "--no-progress"]
    return out


def test_readme_lists_commands_for_every_subcommand():
    subs = {shlex.split(c)[1] for c in readme_commands()}
    assert {"list", "run", "compare", "tune", "plot", "diagnose", "launch"} <= subs


def test_every_readme_command_runs_scaled_down(tmp_path, capsys):
    from htbo.cli import main
    from htbo.history import read_jsonl
    for cmd in readme_commands():
        argv = _scaled(cmd, tmp_path)
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 0, f"`{cmd}` (run as {argv}) exited {rc}: {err[-2000:]}"
        if "--out" in argv and argv[0] != "diagnose":
            out = pathlib.Path(argv[argv.index("--out") + 1])
            rows = read_jsonl(str(out / "history.jsonl"))
            assert any(r["step"] > 0 for r in rows), cmd
            assert (out / "summary.md").exists() and (out / "plot.png").exists(), cmd
        if argv[0] == "diagnose":
            out = pathlib.Path(argv[argv.index("--out") + 1])
            assert json.loads((out / "diagnosis.json").read_text())
