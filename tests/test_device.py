import pytest
import torch

from attnbook.device import describe, pick_device


def test_pick_device_prints_and_returns_a_device(capsys, monkeypatch):
    monkeypatch.delenv("ATTNBOOK_DEVICE", raising=False)
    device = pick_device()
    assert isinstance(device, torch.device)
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert device.type == expected
    assert capsys.readouterr().out.startswith("Running on " + expected)


def test_forcing_a_device(monkeypatch):
    assert pick_device("cpu", verbose=False) == torch.device("cpu")
    monkeypatch.setenv("ATTNBOOK_DEVICE", "cpu")
    assert pick_device(verbose=False).type == "cpu"
    assert "threads" in describe("cpu")


def test_bad_devices(monkeypatch):
    with pytest.raises(ValueError, match="'cpu', 'cuda' or 'mps', got 'tpu'"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch.cuda.is_available"):
            pick_device("cuda")
