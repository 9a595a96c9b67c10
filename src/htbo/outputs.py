"""Output directories of CLI runs: safe creation, checkpoints, summaries and plots.

A run directory holds ``config.json`` (the command that made it, so ``--resume DIR`` needs
nothing else), ``runs.jsonl`` (one record per solver when it starts and when it ends),
``history.jsonl`` (rows), ``checkpoints/LABEL.npz`` (solver states, PRNG keys and the step at
the last evaluation, written atomically: write a temporary file, then rename), and at the
end ``summary.md`` and ``plot.png``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import jax
import numpy as np

from .history import JsonlWriter, format_table, read_jsonl, summarize

__all__ = ["prepare_out", "Checkpoint", "write_summary", "last_records", "OUTPUT_FILES"]

OUTPUT_FILES = ("config.json", "runs.jsonl", "history.jsonl", "summary.md", "plot.png",
                "best.json", "checkpoints")


def prepare_out(out: str, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Check that ``out`` can hold a new run (or the run to resume) and create it.

    Refuses a file, an unwritable place, or a directory that already holds a run (unless
    ``overwrite``: its htbo files are removed; or ``resume``)."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")
    if resume:
        if not (p / "config.json").exists():
            raise ValueError(f"--resume {out}: no run to resume there (no config.json)")
        return p
    if p.exists() and (p / "history.jsonl").exists():
        if not overwrite:
            raise ValueError(f"--out {out} already holds a run; pass --resume to continue it "
                             "or --overwrite to replace it")
        for name in OUTPUT_FILES:
            q = p / name
            if q.is_dir():
                shutil.rmtree(q)
            elif q.exists():
                q.unlink()
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".htbo-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    return p


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "run"


class Checkpoint:
    """``save(ck)`` / ``load(template)`` of a runner checkpoint for one solver label."""

    def __init__(self, out: Path, label: str):
        self.path = Path(out) / "checkpoints" / f"{_slug(label)}.npz"

    def save(self, ck: dict) -> None:
        leaves = jax.tree_util.tree_leaves(ck["states"])
        arrays = {f"leaf{i}": np.asarray(a) for i, a in enumerate(leaves)}
        arrays["keys"] = np.asarray(jax.random.key_data(ck["keys"]))
        meta = dict(step=int(ck["step"]), run_s=float(ck["run_s"]), dead=ck.get("dead", {}),
                    n_leaves=len(leaves))
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def exists(self) -> bool:
        return self.path.exists()

    def load(self, template) -> dict:
        """The checkpoint as a runner ``resume`` dict; ``template`` gives the state structure
        (e.g. ``jax.eval_shape`` of the solver's batched init)."""
        with np.load(self.path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            leaves = [z[f"leaf{i}"] for i in range(meta["n_leaves"])]
            keys = jax.random.wrap_key_data(z["keys"])
        tdef = jax.tree_util.tree_structure(template)
        want = jax.tree_util.tree_leaves(template)
        if len(want) != len(leaves) or any(np.shape(a) != tuple(b.shape)
                                           for a, b in zip(leaves, want)):
            raise ValueError(f"checkpoint {self.path} does not match this solver's state "
                             "(was the run's configuration changed?)")
        states = jax.tree_util.tree_unflatten(tdef, [jax.numpy.asarray(a) for a in leaves])
        return dict(states=states, keys=keys, step=meta["step"], run_s=meta["run_s"],
                    dead=meta["dead"])


def last_records(out: Path) -> dict:
    """The last ``runs.jsonl`` record per label."""
    path = Path(out) / "runs.jsonl"
    recs = {}
    if path.exists():
        for r in read_jsonl(str(path)):
            recs[r.get("label", r.get("solver"))] = r
    return recs


def write_summary(out: Path, rows: list[dict], title: str, metric: str = "grad_norm",
                  only: set | None = None, note: str = "") -> str:
    """Write ``summary.md`` and ``plot.png`` (diverged seeds marked in both); return the
    table. ``only``: labels to plot (e.g. each solver's best grid point)."""
    from .plots import plot_histories

    diverged = {}
    for r in last_records(out).values():
        for d in r.get("diverged") or []:
            diverged.setdefault(r.get("label"), []).append((d["seed"], d["step"]))
        for d in r.get("tune_diverged") or []:
            diverged.setdefault(d["label"], []).append((d["seed"], d["step"]))
    table = format_table(summarize(rows, metric, diverged), metric)
    if note:
        table += "\n\n" + note
    plot_rows = rows if only is None else [r for r in rows if r.get("label", r["solver"]) in only]
    plot_histories(plot_rows, str(Path(out) / "plot.png"), metric=metric, title=title,
                   diverged=diverged)
    (Path(out) / "summary.md").write_text(f"# {title}\n\n{table}\n")
    return table


def writer(out: Path, name: str) -> JsonlWriter:
    return JsonlWriter(str(Path(out) / name))
