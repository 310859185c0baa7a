import json

import numpy as np
import pytest
import torch

from attnbook import check


def test_at_least_and_at_most(capsys):
    assert check.at_least(0.97, 0.95, "accuracy") is None
    assert "PASS  accuracy = 0.97 (at least 0.95)" in capsys.readouterr().out
    with pytest.raises(check.CheckFailed, match="accuracy: expected at least 0.95, got 0.9"):
        check.at_least(0.9, 0.95, "accuracy")
    with pytest.raises(check.CheckFailed, match="expected at most 1, got 2"):
        check.at_most(2, 1, "loss")
    check.at_most(torch.tensor(0.5), 1, "loss")
    assert check.results()[-1]["value"] == 0.5
    with pytest.raises(check.CheckFailed, match="NaN"):
        check.at_least(float("nan"), 0, "x")
    with pytest.raises(TypeError, match="real number, got str"):
        check.at_least("0.9", 0.5, "x")
    with pytest.raises(TypeError, match="non-empty string"):
        check.at_least(1, 0, "")


def test_close_reports_where_and_by_how_much():
    check.close(torch.ones(2, 3), np.ones((2, 3)), "same")
    with pytest.raises(check.CheckFailed, match=r"expected shape \(2, 3\), got \(3, 2\)"):
        check.close(torch.ones(3, 2), torch.ones(2, 3), "shape")
    got = torch.zeros(2, 2)
    got[1, 0] = 0.5
    with pytest.raises(check.CheckFailed, match=r"largest difference is 0.5 at index \(1, 0\)"):
        check.close(got, torch.zeros(2, 2), "values")
    with pytest.raises(check.CheckFailed, match="largest difference"):
        check.close(torch.tensor([float("nan")]), torch.tensor([1.0]), "nan")


def test_equal_true_and_cases():
    check.equal("abc", "abc", "text")
    with pytest.raises(check.CheckFailed, match="expected 'x', got 'y'"):
        check.equal("y", "x", "text")
    check.true(True, "holds")
    with pytest.raises(check.CheckFailed, match=r"expected it to hold.*\(because\)"):
        check.true(False, "holds", "because")
    check.cases(lambda a, b: a + b, [((1, 2), 3), ((0.5, 0.25), 0.75)], "add")
    with pytest.raises(check.CheckFailed, match=r"add, case 2 \(arguments \(2, 2\)\): expected 5, got 4"):
        check.cases(lambda a, b: a + b, [((1, 2), 3), ((2, 2), 5)], "add")

    def stub(x):
        raise NotImplementedError

    with pytest.raises(check.CheckFailed, match="not implemented yet"):
        check.cases(stub, [((1,), 1)], "stub")
    with pytest.raises(check.CheckFailed, match="raised ZeroDivisionError"):
        check.cases(lambda x: 1 / x, [((0,), 1.0)], "div")
    with pytest.raises(TypeError, match="expected a function"):
        check.cases(3, [], "nofunc")


def test_results_are_recorded_to_a_file(tmp_path, monkeypatch):
    path = tmp_path / "results.jsonl"
    monkeypatch.setenv("ATTNBOOK_RESULTS", str(path))
    check.at_least(3, 2, "recorded")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [{"name": "recorded", "kind": "at_least", "value": 3.0, "target": 2.0, "passed": True}]
    assert check.results()[-1]["name"] == "recorded"


def test_checkfailed_survives_python_O():
    assert issubclass(check.CheckFailed, AssertionError)
    with pytest.raises(check.CheckFailed):
        check.at_least(0, 1, "x")


# --- the margin rule and recording mode ----------------------------------------------------

def test_margin_target_moves_the_worst_seed_outward_by_the_larger_margin():
    assert check.margin_target([0.95, 0.97, 0.96], "at_least") == pytest.approx(0.95 - 0.02)
    assert check.margin_target([1.0, 1.0, 1.0], "at_least") == pytest.approx(0.98)  # 2% of the worst
    assert check.margin_target([1.40, 1.41, 1.45], "at_most") == pytest.approx(1.45 + 0.05)
    assert check.margin_target([-2.0, -1.0, -1.5], "at_most") == pytest.approx(-1.0 + 1.0)


@pytest.mark.parametrize("values, kind, error, message", [
    ([1.0, 2.0], "at_most", ValueError, "at least 3 seeds"),
    ([1.0, 2.0, 3.0], "close", ValueError, "'at_least' or 'at_most'"),
    ("123", "at_most", TypeError, "sequence of numbers"),
    ([1.0, "x", 2.0], "at_most", TypeError, "real number"),
])
def test_margin_target_rejects_bad_input(values, kind, error, message):
    with pytest.raises(error, match=message):
        check.margin_target(values, kind)


def test_record_mode_records_a_failing_threshold_instead_of_raising(monkeypatch, tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    monkeypatch.setenv("ATTNBOOK_RESULTS", str(results))
    monkeypatch.setenv("ATTNBOOK_CHECKS", "record")
    check.at_least(0.5, 0.9, "accuracy")
    check.at_most(2.0, 1.0, "loss")
    assert "FAIL (recorded" in capsys.readouterr().out
    entries = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(e["name"], e["value"], e["passed"]) for e in entries] == [("accuracy", 0.5, False), ("loss", 2.0, False)]
    monkeypatch.delenv("ATTNBOOK_CHECKS")
    with pytest.raises(check.CheckFailed, match="expected at least 0.9"):
        check.at_least(0.5, 0.9, "accuracy")


def test_call_turns_a_stub_and_a_crash_into_failed_checks():
    def stub(x):
        raise NotImplementedError()

    def crash(x):
        return 1 / x

    assert check.call(lambda x: x + 1, (1,), "Exercise 0.1") == 2
    with pytest.raises(check.CheckFailed, match=r"^Exercise 0.1: not implemented yet"):
        check.call(stub, (1,), "Exercise 0.1")
    with pytest.raises(check.CheckFailed, match=r"^Exercise 0.1, case 3: calling it with \(0,\) raised ZeroDivisionError"):
        check.call(crash, (0,), "Exercise 0.1", 3)


def test_the_trial_helpers_report_what_came_back():
    from attnbook.course.exercises import _trial

    with pytest.raises(check.CheckFailed, match="returned list, expected a dict"):
        _trial.trial_result([], "Exercise 0.2")
    with pytest.raises(check.CheckFailed, match="Exercise 0.2: no mask"):
        _trial.trial_result({"problem": "no mask"}, "Exercise 0.2")
    with pytest.raises(check.CheckFailed, match=r"no y of shape \(2, 3\) \(got \(3, 2\)\)"):
        _trial.result_tensor({"y": torch.zeros(3, 2)}, "y", (2, 3), "Exercise 0.2")
    assert _trial.result_tensor({"y": torch.zeros(2, 3, dtype=torch.float64)}, "y", (2, 3), "x").dtype == torch.float32
    assert _trial.probe_layer(lambda: 3, "Layer(4)", []) == "expected Layer(4) to be an nn.Module, got int"
    model = _trial.OneLayerModel(lambda: torch.nn.Identity(), vocab=5, d_model=8, positions=6)
    g = torch.Generator().manual_seed(0)
    x, y = _trial.lag_batch(g, 5, 6, 2, 4)
    assert x.shape == (4, 6) and torch.equal(y, x[:, :-2])
    first = _trial.lag_loss(model(x), y, 2).item()
    last = _trial.train_steps(model, lambda: (x, y), lambda m, a, b: _trial.lag_loss(m(a), b, 2), 30, lr=1e-2)
    assert last < first and not model.training
