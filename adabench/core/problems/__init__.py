"""Benchmark problems; importing this package registers every one of them."""
from . import lenet, linreg, quadratic, sparse_logreg  # noqa: F401  (registration)
from .base import PROBLEMS, Problem, make_problem, problem_arguments

__all__ = ["PROBLEMS", "Problem", "make_problem", "problem_arguments"]
