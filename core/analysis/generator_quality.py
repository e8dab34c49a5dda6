"""How good a generator is, measured against real photos: the five figures of the built-in model's card.

All inputs are arrays the caller made (encoder features, grayscale pixels), so the measures know no
model or store:

- **conditioning accuracy**: a probe trained on real photos labels each generated image as its
  prompt's class (:func:`conditioning_accuracy`);
- **classification accuracy score (CAS)**: a probe trained only on generated images, scored on real
  test photos (:func:`classification_accuracy_score`);
- **Fréchet distance** between encoder features of generated and real test photos, beside the floor
  of real training photos against the same test photos (:func:`frechet_distance`);
- **diversity** within a class: the mean pairwise cosine distance of its features (:func:`diversity`),
  reported as generated / real;
- **memorisation**: the share of generated images whose nearest training photo (pixels) is closer
  than all but ``quantile`` of the real test photos' nearest training photos (:func:`memorisation`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def _probe(train_x: np.ndarray, train_y: np.ndarray):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5)).fit(train_x, train_y)


def conditioning_accuracy(real_x: np.ndarray, real_y: np.ndarray, gen_x: np.ndarray, gen_y: np.ndarray) -> float:
    """Share of generated images a real-trained probe assigns to their prompt's class."""
    return float((_probe(real_x, real_y).predict(gen_x) == gen_y).mean())


def classification_accuracy_score(gen_x: np.ndarray, gen_y: np.ndarray, test_x: np.ndarray,
                                  test_y: np.ndarray) -> float:
    """Accuracy on real test photos of a probe trained only on generated images."""
    return float((_probe(gen_x, gen_y).predict(test_x) == test_y).mean())


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (FID's formula)."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    root = root.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def diversity(features: np.ndarray) -> float:
    """Mean pairwise cosine distance within one set of features."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    n = len(unit)
    return float((n * n - sim.sum()) / max(1, n * (n - 1)))


def nearest_distances(queries: np.ndarray, pool: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Euclidean distance of each query row to its nearest row of ``pool``."""
    pool_sq = (pool.astype(np.float64) ** 2).sum(1)
    out = np.empty(len(queries))
    for i in range(0, len(queries), chunk):
        q = queries[i:i + chunk].astype(np.float64)
        d = (q ** 2).sum(1)[:, None] + pool_sq[None, :] - 2 * q @ pool.T.astype(np.float64)
        out[i:i + chunk] = np.sqrt(np.maximum(d.min(1), 0))
    return out


def memorisation(generated: np.ndarray, train: np.ndarray, test: np.ndarray, quantile: float = 0.01) -> tuple[float, float]:
    """``(share, threshold)``: the share of generated rows nearer to a training row than the ``quantile``
    of real test rows' nearest-training distances (flattened pixels in [0, 1])."""
    threshold = float(np.quantile(nearest_distances(test, train), quantile))
    return float((nearest_distances(generated, train) < threshold).mean()), threshold


@dataclass
class Quality:
    conditioning: float
    conditioning_all: float
    cas: float
    cas_all: float
    frechet: float
    frechet_floor: float
    diversity_ratio: float
    memorisation: float

    def as_dict(self) -> dict:
        return asdict(self)
