"""Run-directory files: checkpoints and the summary (table + plot).

``checkpoints/LABEL.npz`` holds a solver's states (every member), PRNG keys, the step, the
compiled time so far, the failed members and the configuration that made it (so a resume
with another configuration is refused); it is written atomically (a temporary file with a
per-process name, then a rename).
"""
from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import jax
import numpy as np

from .history import format_table, summarize

__all__ = ["Checkpoint", "write_summary"]


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "run"


class Checkpoint:
    """``save(ck)`` / ``load(template)`` of a run-loop checkpoint for one solver label;
    ``config``: the configuration stored with it."""

    def __init__(self, out: Path, label: str, config: dict | None = None):
        self.path = Path(out) / "checkpoints" / f"{_slug(label)}.npz"
        self.config = config

    def save(self, ck: dict) -> None:
        import io

        from .locks import atomic_write
        leaves = jax.tree_util.tree_leaves(ck["states"])
        arrays = {f"leaf{i}": np.asarray(a) for i, a in enumerate(leaves)}
        arrays["keys"] = np.asarray(jax.random.key_data(ck["keys"]))
        meta = dict(step=int(ck["step"]), run_s=float(ck["run_s"]), dead=ck.get("dead", {}),
                    n_leaves=len(leaves), config=self.config)
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write(self.path, buf.getvalue())

    def exists(self) -> bool:
        return self.path.exists()

    def _damaged(self, why: str) -> ValueError:
        return ValueError(f"checkpoint {self.path} is damaged ({why}); delete it to restart "
                          "this solver from step 0 (its rows are rerun)")

    def load(self, template) -> dict:
        """The checkpoint as a run-loop ``resume`` dict; ``template`` gives the state structure
        (e.g. ``jax.eval_shape`` of the solver's batched init)."""
        from .locks import oserror_message
        try:
            archive = zipfile.is_zipfile(self.path)
        except OSError as e:
            raise ValueError(oserror_message(e, self.path, "read")) from None
        if not archive:  # truncated, overwritten, or not written by htbo
            raise self._damaged("not an .npz archive")
        try:
            with np.load(self.path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                leaves = [z[f"leaf{i}"] for i in range(meta["n_leaves"])]
                keys = jax.random.wrap_key_data(z["keys"])
                out = dict(keys=keys, step=int(meta["step"]), run_s=float(meta["run_s"]),
                           dead=dict(meta["dead"]), config=meta.get("config"))
        except (zipfile.BadZipFile, EOFError, KeyError, ValueError, TypeError,
                UnicodeDecodeError) as e:
            why = str(e).splitlines()[0] if str(e) else ""
            raise self._damaged(f"{type(e).__name__}: {why}".rstrip(": ")) from None
        except OSError as e:
            raise ValueError(oserror_message(e, self.path, "read")) from None
        tdef = jax.tree_util.tree_structure(template)
        want = jax.tree_util.tree_leaves(template)
        if len(want) != len(leaves) or any(np.shape(a) != tuple(b.shape)
                                           for a, b in zip(leaves, want)):
            raise ValueError(f"checkpoint {self.path} does not match this solver's state (was "
                             "the run's configuration changed?); delete it to restart this "
                             "solver from step 0")
        out["states"] = jax.tree_util.tree_unflatten(tdef, [jax.numpy.asarray(a) for a in leaves])
        return out


def write_summary(out: Path, rows: list[dict], title: str, metric: str = "grad_norm",
                  only: set | None = None, note: str = "", records: dict | None = None) -> str:
    """Write ``summary.md`` and ``plot.png`` (diverged seeds marked in both); return the
    table. ``only``: labels to plot (e.g. each solver's best grid point); ``records``: the
    last ``runs.jsonl`` record per label (their divergences are marked)."""
    from .plots import plot_histories

    diverged = {}
    for r in (records or {}).values():
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
