import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from attnbook.viz.plotting import accuracy_by_length, attention_heatmap, learning_curves  # noqa: E402
from attnbook.training import History  # noqa: E402


def test_heatmap_labels_every_token():
    ax = attention_heatmap(torch.softmax(torch.randn(2, 3), -1), ["4", "2"], ["forty", "two", "<eos>"],
                           annotate=True)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["forty", "two", "<eos>"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["4", "2"]
    plt.close("all")


def test_curves_and_accuracy_plot_draw_one_line_per_model():
    h = History(step=[1, 2], loss=[2.0, 1.0])
    ax = learning_curves({"a": h, "b": h})
    assert len(ax.get_lines()) == 2
    table = pd.DataFrame({"digits": [1, 2], "exact_match": [1.0, 0.5]})
    ax = accuracy_by_length({"a": table}, threshold=0.5)
    assert list(ax.get_lines()[0].get_ydata()) == [100.0, 50.0]
    plt.close("all")


def test_bad_plot_inputs():
    with pytest.raises(ValueError, match=r"shape \(2, 3\) to match the labels, got \(2, 2\)"):
        attention_heatmap(torch.ones(2, 2), ["a", "b"], ["x", "y", "z"])
    with pytest.raises(ValueError, match="2-D weights"):
        attention_heatmap(torch.ones(2), ["a", "b"], ["x"])
    with pytest.raises(TypeError, match="non-empty mapping"):
        learning_curves({})
    with pytest.raises(ValueError, match="columns 'digits' and 'exact_match'"):
        accuracy_by_length({"a": pd.DataFrame({"x": [1]})})
