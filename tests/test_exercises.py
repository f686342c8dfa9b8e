"""The reference report's exercises: 2 (AdaGrad on two quadratics, to the reference report's digits) and 1, 3, 4 as property tests."""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from adabench.core.linalg import (
    condition_number,
    diagonal_preconditioned,
    eigenvalues_in_discs,
    gerschgorin_discs,
    random_orthogonal,
    random_spd,
)
from adabench.core.spec import RunSpec
from adabench.core.trainer import train_run


def test_reference_copy_matches_shared(reference_files):
    copy_path, shared_path = reference_files
    if not shared_path.exists():
        pytest.skip(f"no {shared_path}")
    copy = yaml.safe_load(copy_path.read_text())
    shared = yaml.safe_load(shared_path.read_text())
    assert copy == shared  # the whole file: the config reads every section


# exercise 2: lr 0.4, eps 1e-6 under the root, 20 steps from (2, 1)
QUADRATIC_HYPERPARAMETERS = {"lr": 0.4, "eps": 1e-6, "eps_inside_sqrt": True}


def through_train_run(problem, out_dir, start_train):
    train_run(RunSpec(problem, "adagrad", QUADRATIC_HYPERPARAMETERS, seed=0), out_dir, device="cpu")


def through_cli(problem, out_dir, start_train):
    process = start_train("--problem", problem, "--optimizer", "adagrad", "--lr", "0.4", "--set", "eps=1e-6",
                          "--set", "eps_inside_sqrt=true", "--seed", "0", "--out", str(out_dir))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr


@pytest.mark.parametrize("problem", ["quadratic", "quadratic_rotated"])
@pytest.mark.parametrize("run", [through_train_run, through_cli], ids=["train_run", "cli"])
def test_quadratic_trajectory_matches_the_report(tmp_path, reference_results, read_metrics, start_train, problem, run):
    run(problem, tmp_path, start_train)
    reference = reference_results[problem]
    metrics = read_metrics(tmp_path)
    assert list(metrics["step"]) == list(range(21))
    np.testing.assert_allclose(metrics[["x1", "x2"]].to_numpy(), reference["trajectory"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(metrics["loss"].to_numpy(), reference["loss"], rtol=0, atol=1e-12)


seeds = st.integers(0, 2**32 - 1)
sizes = st.integers(1, 8)
entries = st.floats(-1e3, 1e3)


@given(seed=seeds, data=st.data())
def test_orthogonal_change_of_variables_keeps_distances(seed, data):
    """Exercise 1: ||c - delta|| = ||U c - U delta|| for orthogonal U."""
    n = data.draw(sizes)
    c, delta = data.draw(arrays(np.float64, n, elements=entries)), data.draw(arrays(np.float64, n, elements=entries))
    u = random_orthogonal(n, np.random.default_rng(seed))
    np.testing.assert_allclose(u.T @ u, np.eye(n), atol=1e-12)
    # U c and U delta are rounded apart before the subtraction: an absolute error of the inputs' size
    scale = 1 + np.linalg.norm(c) + np.linalg.norm(delta)
    assert np.linalg.norm(u @ c - u @ delta) == pytest.approx(np.linalg.norm(c - delta), rel=1e-12, abs=1e-13 * scale)


def test_gerschgorin_discs_by_hand():
    matrix = np.array([[4.0, -1.0, 2.0], [0.5, -3.0, 0.0], [1.0, 1.0, 1.0]])
    centers, radii = gerschgorin_discs(matrix)
    np.testing.assert_array_equal(centers, [4.0, -3.0, 1.0])
    np.testing.assert_array_equal(radii, [3.0, 0.5, 2.0])


@given(n=sizes, seed=seeds, scale=st.floats(1e-3, 1e3), symmetric=st.booleans())
def test_gerschgorin_holds_for_random_matrices(n, seed, scale, symmetric):
    """Exercise 3: every eigenvalue lies in some disc |lambda - M_jj| <= sum_{k != j} |M_jk|."""
    matrix = scale * np.random.default_rng(seed).standard_normal((n, n))
    if symmetric:
        matrix = matrix + matrix.T
    assert eigenvalues_in_discs(matrix)


@given(n=sizes, seed=seeds, condition=st.floats(1, 1e6))
def test_random_spd_has_the_condition_asked_for(n, seed, condition):
    matrix = random_spd(n, np.random.default_rng(seed), condition)
    np.testing.assert_array_equal(matrix, matrix.T)
    assert np.linalg.eigvalsh(matrix).min() > 0
    assert condition_number(matrix) == pytest.approx(condition if n > 1 else 1.0, rel=1e-6)


@given(n=sizes, seed=seeds, condition=st.floats(1, 1e6), log_scale=st.floats(-3, 3))
def test_preconditioned_spd_eigenvalues_lie_near_one(n, seed, condition, log_scale):
    """Exercise 4: diag^-1/2 M diag^-1/2 has a unit diagonal, so its discs, eigenvalues included, centre on 1."""
    rng = np.random.default_rng(seed)
    scales = 10.0 ** rng.uniform(-abs(log_scale), abs(log_scale), n)
    preconditioned = diagonal_preconditioned(scales[:, None] * random_spd(n, rng, condition) * scales[None, :])
    centers, radii = gerschgorin_discs(preconditioned)
    np.testing.assert_allclose(centers, 1.0, rtol=1e-12)
    assert eigenvalues_in_discs(preconditioned)
    eigenvalues = np.linalg.eigvalsh(preconditioned)
    assert np.all(np.abs(eigenvalues - 1) <= radii.max() + 1e-9)


@given(n=st.integers(2, 8), seed=seeds, condition=st.floats(1, 10), decades=st.floats(3, 5))
def test_diagonal_preconditioning_undoes_bad_scaling(n, seed, condition, decades):
    """D A D with A well conditioned and D spanning ``decades`` powers of ten: the preconditioner undoes D.

    Guaranteed, not measured: diag(M)^-1/2 cancels D exactly (up to rounding); van der Sluis (1969) bounds
    cond of the preconditioned matrix by n * cond(A); and cond(M) >= max M_jj / min M_jj (Rayleigh quotients),
    at least 10^(2 decades) / cond(A) here since A's diagonal lies in [1, cond(A)].
    """
    rng = np.random.default_rng(seed)
    spd = random_spd(n, rng, condition)
    exponents = rng.uniform(-decades / 2, decades / 2, n)
    exponents[:2] = -decades / 2, decades / 2  # the full spread, whatever the draw
    scales = 10.0 ** exponents
    badly_scaled = scales[:, None] * spd * scales[None, :]

    preconditioned = diagonal_preconditioned(badly_scaled)
    np.testing.assert_allclose(preconditioned, diagonal_preconditioned(spd), rtol=1e-12, atol=1e-12)
    assert condition_number(preconditioned) <= n * condition * (1 + 1e-9)
    diagonal = np.diag(badly_scaled)
    # the SVD of a matrix this ill conditioned resolves its smallest singular value to a few digits only
    assert condition_number(badly_scaled) >= 0.99 * diagonal.max() / diagonal.min()
    assert condition_number(preconditioned) < condition_number(badly_scaled) / 100
