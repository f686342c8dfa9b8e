"""The tables drawn from the runs table: what each optimizer's step costs, what the study cost per machine, and
the protocols side by side as the Markdown shows them."""
from __future__ import annotations

import pandas as pd
import pytest

from adabench.analysis.protocols import display_protocols, protocol_table
from adabench.analysis.tables import compute_table, overhead_table


def run(key: str, problem: str, optimizer: str, steps: int, step_s: float, train_s: float, wall_s: float = 0.0,
        size: int = 1, device_name: str = "AMD EPYC", threads: int = 1, epochs: int = 1) -> dict:
    return {"run_key": key, "problem": problem, "optimizer": optimizer, "steps": steps, "step_time_s": step_s,
            "train_time_s": train_s, "wall_time_s": wall_s, "population_size": size, "device": "cpu",
            "device_name": device_name, "threads": threads, "torch": "2.14.1", "epochs_completed": epochs}


def test_overhead_is_per_step_relative_to_sgd_on_the_same_problem():
    runs = pd.DataFrame([
        run("a1", "p", "sgd", 100, 0.1, 1.0), run("a2", "p", "sgd", 100, 0.3, 1.0),  # median step 2 ms
        run("b1", "p", "adagrad", 100, 0.6, 1.5),
        run("c1", "q", "adam", 10, 0.05, 0.5), run("c2", "q", "adagrad", 10, 0.02, 0.2),  # no SGD: the cheapest
    ])
    table = overhead_table(runs).set_index(["problem", "optimizer"])
    assert table.loc[("p", "sgd"), "step_ms"] == pytest.approx(2.0)
    assert table.loc[("p", "adagrad"), "step_ratio"] == pytest.approx(3.0)
    assert table.loc[("p", "adagrad"), "total_ratio"] == pytest.approx(1.5)
    assert set(table.loc["q", "relative_to"]) == {"adagrad"}
    assert table.loc[("q", "adam"), "step_ratio"] == pytest.approx(2.5)
    assert table.loc[("p", "sgd"), "runs"] == 2 and table.loc[("p", "sgd"), "machines"] == "AMD EPYC"


def test_compute_shares_each_jobs_wall_time_among_its_members_per_machine():
    runs = pd.DataFrame(
        # a population of 4 on one thread: 7200 s of job wall time is 2 hours, whatever the number of members
        [run(f"e{i}", "p", "sgd", 10, 1.0, 900.0, wall_s=7200.0, size=4, epochs=20) for i in range(4)]
        # a lone run on a machine with 4 threads per job: 1 hour of job, 4 thread-hours
        + [run("x", "p", "adam", 10, 1.0, 1800.0, wall_s=3600.0, device_name="Intel Xeon", threads=4, epochs=20)])
    table = compute_table(runs).set_index("device_name")
    assert list(table.index) == ["AMD EPYC", "Intel Xeon", "all"]
    epyc, xeon, everything = table.loc["AMD EPYC"], table.loc["Intel Xeon"], table.loc["all"]
    assert (epyc.runs, epyc.epochs) == (4, 80) and (xeon.runs, xeon.epochs) == (1, 20)
    assert epyc.training_hours == pytest.approx(1.0) and epyc.job_hours == pytest.approx(2.0)
    assert epyc.thread_hours == pytest.approx(2.0)
    assert xeon.job_hours == pytest.approx(1.0) and xeon.thread_hours == pytest.approx(4.0)
    assert (everything.runs, everything.job_hours, everything.thread_hours) == (5, pytest.approx(3.0),
                                                                               pytest.approx(6.0))


def test_compute_of_one_machine_has_no_total_row():
    table = compute_table(pd.DataFrame([run("a", "p", "sgd", 1, 1.0, 3600.0, wall_s=3600.0)]))
    assert len(table) == 1 and table.job_hours.iloc[0] == pytest.approx(1.0)


def test_the_protocols_side_by_side_pair_each_optimizers_setting_result_and_rank():
    rows = []
    # reference protocol: adagrad at lr 0.01 (worse), adam at 0.01 and sgd (not tuned); tuned: adagrad at 0.1 wins
    for seed, (ref_adagrad, ref_adam, ref_sgd, tuned_adagrad, tuned_adam) in enumerate(
            [(0.70, 0.80, 0.60, 0.86, 0.84), (0.72, 0.82, 0.62, 0.88, 0.86)]):
        for optimizer, setting, value, study, tuned in [("adagrad", "lr=0.01", ref_adagrad, True, False),
                                                        ("adam", "lr=0.01", ref_adam, True, False),
                                                        ("sgd", "lr=0.1", ref_sgd, True, False),
                                                        ("adagrad", "lr=0.1", tuned_adagrad, False, True),
                                                        ("adam", "lr=0.001", tuned_adam, False, True)]:
            rows.append({"run_key": f"{optimizer}/{setting}/{seed}", "problem": "p", "optimizer": optimizer,
                         "setting": setting, "seed": seed, "in_study": study, "in_tuned": tuned,
                         "final_headline": value, "headline_metric": "test_acc", "headline_mode": "max",
                         "status": "finished"})
    shown = display_protocols(protocol_table(pd.DataFrame(rows), ["p"]))
    assert list(shown.optimizer) == ["adagrad", "adam", "sgd"]  # best tuned first; untuned last
    adagrad = shown.iloc[0]
    assert (adagrad["metric"], adagrad["reference protocol"], adagrad["tuned protocol"]) == ("test_acc (max)",
                                                                                          "lr=0.01", "lr=0.1")
    assert adagrad["mean ± std (reference)"] == "0.7100 ± 0.0141" and adagrad["rank (reference)"] == "2"
    assert adagrad["mean ± std (tuned)"] == "0.8700 ± 0.0141" and adagrad["rank (tuned)"] == "1"
    assert adagrad["95% CI (t)"].startswith("[0.") and "–" not in adagrad.values
    sgd = shown.iloc[2]
    assert sgd["rank (reference)"] == "3" and (sgd["tuned protocol"], sgd["rank (tuned)"]) == ("–", "–")


def test_failed_seeds_end_early_like_diverged_ones_in_the_protocols_table():
    """A seed whose optimizer raised ("failed", no final value) is counted as failed, not trained: with seeds that
    never rose past chance it makes the optimizer one that does not train, and where every seed failed it has no
    mean and ranks last."""
    from adabench.analysis.protocols import DOES_NOT_TRAIN

    declarations = {"p": {"headline": ["test_acc", "max"], "metric_bounds": {"test_acc": [0.0, 1.0]},
                          "chance": {"test_acc": 0.1}}}
    finals = {"adam": [(0.85, "finished"), (0.86, "finished")], "sgd": [(0.80, "finished"), (0.81, "finished")],
              "plugin": [(float("nan"), "failed"), (float("nan"), "failed")],
              "stuck": [(0.10, "finished"), (float("nan"), "failed")]}
    rows = [{"run_key": f"{optimizer}/{seed}", "problem": "p", "optimizer": optimizer, "setting": "lr=0.1",
             "seed": seed, "in_study": False, "in_tuned": True, "final_headline": final, "best_value": final,
             "headline_metric": "test_acc", "headline_mode": "max", "status": status}
            for optimizer, seeds in finals.items() for seed, (final, status) in enumerate(seeds)]
    table = protocol_table(pd.DataFrame(rows), ["p"], declarations).set_index("optimizer")
    assert table.loc["plugin", "failed"] == 2 and table.loc["plugin", "diverged"] == 0
    assert table.loc["plugin", "rank"] == 3 and table.loc["plugin", "verdict"] == ""
    assert table.loc["stuck", "verdict"] == DOES_NOT_TRAIN and pd.isna(table.loc["stuck", "rank"])
    assert (table.loc["stuck", "never_trained"], table.loc["stuck", "failed"]) == (1, 1)
    # a table without outcomes (older, or synthetic): the status alone says failed
    plain = protocol_table(pd.DataFrame(rows), ["p"]).set_index("optimizer")
    assert plain.loc["plugin", "failed"] == 2 and plain.loc["stuck", "failed"] == 1 and plain.loc["plugin", "rank"] == 4
