"""E6: decentralized hyper-cleaning: 8 agents, real data, no injected noise.

scikit-learn's digits (896 training images, half the labels corrupted, 400 validation
images) split over 8 agents, i.i.d. or by Dirichlet(0.3) label shares, on a ring or an
exponential graph. D-NSVRB (every variable normalized), D-NSVRB normalizing x only,
the unnormalized DSVRB, its clipped variant and DSGD (no tracking, no variance reduction),
all at the same budget **per agent**, tuned on the final validation loss at the network
averages (x̄, ȳ); the network-average test accuracy and the consensus error are reported.
The noise comes from the data: the two ∇ₓG terms share their samples.
"""
from __future__ import annotations

from protocol import Cell, Method
from report import curves, figure, rel, save, table, verdicts

NAME = "E6"
TITLE = "E6: decentralized hyper-cleaning (8 agents)"
SETTINGS = [("ring:8", "iid"), ("ring:8", "dirichlet:0.3"), ("exponential:8", "iid"),
            ("exponential:8", "dirichlet:0.3")]
BASE = dict(lam=10.0, batch=32, shared_samples=True)
SECOND = {"eta_y": [0.03, 0.1], "eta_z": [0.03, 0.1]}


def methods():
    def m(label, solver, eta, arm="baseline", **hp):
        second = dict(SECOND, **({"clip": [0.01, 0.03]} if solver == "dsvrb-clip" else {}))
        return Method(label, solver, eta, second, dict(BASE, **hp), arm=arm,
                      family="decentralized", eta_key="eta_x")
    return [m("D-NSVRB", "dnsvrb", 3.0, arm="paper"),
            m("D-NSVRB (x only)", "dnsvrb", 3.0, arm="paper", inner_update="plain"),
            m("DSVRB", "dsvrb", 1000.0),
            m("DSVRB-clip", "dsvrb-clip", 100.0),
            m("DSGD", "dsgd-bilevel", 1000.0)]


def cells(quick: bool):
    out = []
    settings, ms, budget = SETTINGS, methods(), 200_000
    kw = dict(seeds=3, eval_seeds=5, n_evals=15)
    if quick:
        settings, ms, budget = SETTINGS[:1], [methods()[0]], 3000
        kw = dict(seeds=2, eval_seeds=2, n_evals=3, n_eta=1, max_rounds=0)
    for net, split in settings:
        for m in ms:
            out.append(Cell(NAME, f"{net}, {split} (digits)", "none", m,
                            dict(problem="hypercleaning", args=dict(dataset="digits",
                                                                    split=split),
                                 noise=None, network=net, traits=dict(hypergradient=False)),
                            budget=budget, metric="val_loss",
                            metrics=("val_loss", "test_acc", "avg_test_acc", "f1",
                                     "consensus"), noise_class="light", **kw))
    return out


def report(cells, figdir, quick, probes=None) -> str:
    groups = sorted({c["problem"] for c in cells})
    k = cells[0]["metric"]
    panels = [(k, "sfo", True), (k, "comm_rounds", True), ("avg_test_acc", "sfo", False)]
    fig, axes = figure(len(groups), len(panels), 4.2, 3.0)
    for i, g in enumerate(groups):
        cs = [c for c in cells if c["problem"] == g]
        for j, (m, x, log) in enumerate(panels):
            curves(axes[i][j], cs, m, x=x if x in cs[0]["history"] else "sfo", log=log)
            axes[i][j].set_ylabel(m, fontsize=8)
            if x == "sfo":
                axes[i][j].set_xlabel("SFO per agent")
            axes[i][j].set_title(g, fontsize=8)
    f = save(fig, f"{figdir}/e6_decentralized.png",
             "E6: best point of each method on fresh seeds (SFO per agent; communication "
             "rounds)")
    return "\n".join([
        __doc__.split("\n", 1)[1].strip(), "", f"![decentralized]({rel(f)})", "",
        table(cells, lambda c: (c["problem"], c["method"]), ("avg_test_acc", "consensus")), "",
        f"Verdicts (D-NSVRB variants against the best baseline; final {k}):", "",
        *verdicts(cells, lambda c: c["problem"]), "",
        "On the network-average test accuracy:", "",
        *verdicts(cells, lambda c: c["problem"], metric="avg_test_acc", higher_better=True),
        ""])
