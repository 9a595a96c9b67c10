"""One quantile rule for tables and plotted bands: a seed that stopped counts as inf."""
import math

import numpy as np

from htbo.history import bands, quantile, summarize


def test_bands_count_a_stopped_seed_as_inf_like_the_tables():
    # 5 seeds x 3 evaluations; seed 4 diverged after the first evaluation (NaN afterwards)
    vals = np.array([[4.0, 2.0, 1.0], [4.0, 3.0, 2.0], [4.0, 1.0, 0.5], [4.0, 2.5, 1.5],
                     [4.0, np.nan, np.nan]])
    med, q20, q80 = bands(vals)
    last = [1.0, 2.0, 0.5, 1.5, math.inf]
    assert med[-1] == np.median(last) == 1.5 and q80[-1] == quantile(last, 0.8) == 2.0
    assert q20[-1] == quantile(last, 0.2) == 0.5
    # with 3 of 5 seeds gone the median itself is inf (not the median of the survivors)
    vals[1:3, 2] = np.nan
    assert bands(vals)[0][-1] == math.inf
    # the final-value table of the same rows gives the same numbers
    rows = [dict(solver="s", seed=i, step=s, sfo=s, time_s=0.0, grad_norm=float(v))
            for i in range(5) for s, v in zip((0, 10, 20), vals[i]) if not np.isnan(v)]
    (t,) = summarize(rows)
    m, lo, hi = bands(vals)
    assert (t["median"], t["q20"], t["q80"]) == (m[-1], lo[-1], hi[-1])
