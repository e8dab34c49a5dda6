"""The Fréchet distance with fewer rows than dimensions is computed in the span of the rows (cubic in the
rows, not the 1 280 dimensions of the default encoder) and equals the d × d computation to round-off."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis import diagnostic_metrics as dm


def _full(a: np.ndarray, b: np.ndarray) -> float:
    mu = a.mean(axis=0) - b.mean(axis=0)
    sa, sb = dm._shrunk_covariance(a), dm._shrunk_covariance(b)
    root = dm._sqrtm_psd(sa)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ sb @ root), 0, None)).sum()
    return float(mu @ mu + np.trace(sa) + np.trace(sb) - 2 * cross)


@pytest.mark.parametrize("n_a,n_b,d", [(5, 8, 64), (30, 40, 200), (100, 60, 300)])
def test_low_rank_frechet_equals_the_full_computation(n_a, n_b, d):
    rng = np.random.default_rng(d)
    a = rng.normal(size=(n_a, d)) * rng.uniform(0.5, 2.0, d)
    b = rng.normal(size=(n_b, d)) + 0.3
    assert dm.frechet_distance(a, b) == pytest.approx(_full(a, b), rel=1e-9)
    assert dm.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
