"""The README's promises: its Python example runs, its set-up commands are the CI's."""
import pathlib
import re

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_python_example_runs_and_improves_the_start():
    text = (ROOT / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    ns = {}
    exec(compile(code, "README.md", "exec"), ns)
    res = ns["result"]
    start = np.median([r["grad_norm"] for r in res.rows if r["step"] == 0])
    assert np.median(res.final("grad_norm")) < 0.5 * start


def test_ci_runs_the_readme_install_and_test_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    install = re.search(r"^(pip install [^#\n]*?)\s*#", readme, re.M).group(1).strip()
    assert install.replace("pip", "python3 -m pip", 1) in ci
    assert "htbo demo" in readme.split("```")[1]
    assert re.search(r"Test command.*`python -m pytest`", readme)
    assert "python3 -m pytest" in ci
