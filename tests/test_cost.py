import math

import pytest
import torch

from attnbook.cost import TensorMemoryTracker, fit_power_law, measure_time, peak_memory


def test_peak_memory_counts_new_tensors_and_their_release():
    x = torch.randn(1000)  # exists before: not counted

    def work():
        a = torch.empty(256, 1024)  # 1 MiB
        b = a * 2  # another 1 MiB, alive at the same time as a
        del a
        c = b.view(-1)[:10].clone()  # small; the view itself is free
        x.add_(1)  # in place: nothing new
        return c

    result, peak = peak_memory(work)
    assert result.shape == (10,)
    assert 2 * 2**20 <= peak < 2 * 2**20 + 4096


def test_tracker_current_drops_when_tensors_are_freed():
    with TensorMemoryTracker() as tracker:
        a = torch.zeros(1000, dtype=torch.float64)  # 8000 bytes
        assert tracker.current == 8000
        del a
        assert tracker.current == 0
    assert tracker.peak == 8000


def test_quadratic_attention_memory_is_seen():
    q = torch.randn(1, 256, 8)
    _, peak = peak_memory(lambda: torch.softmax(q @ q.transpose(-2, -1), dim=-1) @ q)
    assert peak >= 256 * 256 * 4  # at least one full score matrix


def test_measure_time_is_a_median_of_positive_times():
    assert measure_time(lambda: torch.randn(100).sum(), repeats=3) > 0
    with pytest.raises(ValueError, match="repeats"):
        measure_time(lambda: None, repeats=0)
    with pytest.raises(TypeError, match="callable"):
        measure_time(3)


def test_fit_power_law_recovers_the_exponent():
    x = [100, 200, 400, 800]
    p, c = fit_power_law(x, [3.0 * n**2 for n in x])
    assert math.isclose(p, 2.0, rel_tol=1e-9) and math.isclose(c, 3.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        fit_power_law([1, 2], [0, 1])
    with pytest.raises(ValueError, match="same length"):
        fit_power_law([1, 2, 3], [1, 2])


def test_best_time_is_the_fastest_run_after_the_warm_up(monkeypatch):
    import attnbook.cost as cost

    clock = iter([0.0, 5.0, 10.0, 12.0, 20.0, 23.0])  # runs of 5, 2 and 3 seconds
    monkeypatch.setattr(cost.time, "perf_counter", lambda: next(clock))
    calls = []
    assert cost.best_time(lambda: calls.append(1), repeats=3, warmup=2) == 2.0
    assert len(calls) == 5  # two warm-up runs, then three timed ones
    clock = iter([0.0, 5.0, 10.0, 12.0, 20.0, 23.0])
    assert cost.measure_time(lambda: None, repeats=3, warmup=0) == 3.0  # the median
    with pytest.raises(ValueError, match="warmup to be an int >= 0"):
        cost.best_time(lambda: None, warmup=-1)
    with pytest.raises(ValueError, match="repeats to be an int >= 1"):
        cost.best_time(lambda: None, repeats=True)
    with pytest.raises(TypeError, match="callable"):
        cost.best_time("f")


def test_count_flops_counts_a_matrix_product():
    from attnbook.cost import count_flops

    a, b = torch.randn(8, 16), torch.randn(16, 4)
    assert count_flops(lambda: a @ b) == 2 * 8 * 16 * 4
    assert count_flops(lambda: torch.softmax(a, -1)) == 0  # element-wise work is not counted
    with pytest.raises(TypeError, match="callable"):
        count_flops(None)


def test_fit_power_law_rejects_non_finite_values():
    with pytest.raises(ValueError, match="finite"):
        fit_power_law([1, 2, 3], [1, float("nan"), 3])
    with pytest.raises(ValueError, match="same length"):
        fit_power_law([[1, 2]], [[1, 2]])
