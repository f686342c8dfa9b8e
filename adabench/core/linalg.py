"""Small linear-algebra helpers for the reference report's exercises 1, 3 and 4 (preconditioning, Gerschgorin discs).

Pure numpy functions of their arguments: the tests check the exercises' claims with them, and the figure of
eigenvalues and discs before and after diagonal preconditioning draws them.
"""
from __future__ import annotations

import numpy as np


def random_orthogonal(n: int, generator: np.random.Generator) -> np.ndarray:
    """A Haar-distributed random orthogonal n x n matrix (QR of a Gaussian matrix, signs fixed by R's diagonal)."""
    q, r = np.linalg.qr(generator.standard_normal((n, n)))
    # without the sign fix QR's convention biases the distribution; with it U is uniform on O(n)
    return q * np.sign(np.diag(r))


def random_spd(n: int, generator: np.random.Generator, condition: float = 10.0) -> np.ndarray:
    """A random symmetric positive definite matrix with eigenvalues spread log-uniformly over [1, condition].

    Its 2-norm condition number is ``condition`` (up to rounding); the eigenvectors are a random rotation.
    """
    if not condition >= 1:
        raise ValueError(f"condition must be >= 1, got {condition}")
    rotation = random_orthogonal(n, generator)
    eigenvalues = np.geomspace(1.0, condition, n)
    spd = (rotation * eigenvalues) @ rotation.T
    return (spd + spd.T) / 2  # exactly symmetric despite rounding


def gerschgorin_discs(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres M_jj and radii sum_{k != j} |M_jk| of the row discs of a square matrix."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {matrix.shape}")
    centers = np.diag(matrix).copy()
    radii = np.abs(matrix).sum(axis=1) - np.abs(centers)
    return centers, radii


def eigenvalues_in_discs(matrix: np.ndarray, rtol: float = 1e-9) -> bool:
    """Whether every eigenvalue lies in at least one Gerschgorin disc (the theorem says it always does).

    ``rtol`` (relative to the largest entry) absorbs the rounding of the computed eigenvalues.
    """
    centers, radii = gerschgorin_discs(matrix)
    eigenvalues = np.linalg.eigvals(matrix)
    slack = rtol * max(1.0, float(np.abs(matrix).max()))
    distances = np.abs(eigenvalues[:, None] - centers[None, :])  # eigenvalue x disc
    return bool(np.all(np.any(distances <= radii[None, :] + slack, axis=1)))


def diagonal_preconditioned(matrix: np.ndarray) -> np.ndarray:
    """diag(M)^(-1/2) M diag(M)^(-1/2): entries M_jk / sqrt(M_jj M_kk), a unit diagonal.

    The diagonal preconditioner AdaGrad approximates; it needs a positive diagonal (true for SPD matrices).
    """
    diagonal = np.diag(matrix)
    if np.any(diagonal <= 0):
        raise ValueError("diagonal preconditioning needs a positive diagonal")
    scale = 1.0 / np.sqrt(diagonal)
    return scale[:, None] * matrix * scale[None, :]


def condition_number(matrix: np.ndarray) -> float:
    """2-norm condition number: largest over smallest singular value (lambda_max / lambda_min for SPD)."""
    singular_values = np.linalg.svd(matrix, compute_uv=False)
    return float(singular_values[0] / singular_values[-1])
