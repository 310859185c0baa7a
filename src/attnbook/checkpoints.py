"""Saving and loading trained models as safetensors (never a pickle).

The package ships a few small checkpoints in ``attnbook/checkpoints/``, made by
``tools/train_checkpoints.py`` with exactly the settings a chapter uses, so a later
chapter can compare against an earlier chapter's model without training it again.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from attnbook.rnn import Seq2Seq, Seq2SeqConfig
from attnbook.tasks import NumberTask

__all__ = ["save_seq2seq", "load_seq2seq", "shipped"]


def save_seq2seq(model: Seq2Seq, path: str | Path, task: NumberTask, **info: str) -> None:
    """Write ``model``'s weights, config and source vocabulary to a safetensors file."""
    if not isinstance(model, Seq2Seq):
        raise TypeError(f"expected a Seq2Seq model, got {type(model).__name__}")
    metadata = {"config": json.dumps(dataclasses.asdict(model.config)),
                "src_vocab": json.dumps(task.src_vocab.itos), **{k: str(v) for k, v in info.items()}}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=metadata)


def load_seq2seq(path: str | Path, task: NumberTask, *, device: torch.device | str = "cpu") -> Seq2Seq:
    """Load a model written by :func:`save_seq2seq`, checking it fits ``task``'s vocabulary."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"expected a checkpoint file, got {str(path)!r}, which does not exist")
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "config" not in metadata or "src_vocab" not in metadata:
        raise ValueError(f"expected an attnbook checkpoint with config and vocabulary metadata in {path.name}")
    if json.loads(metadata["src_vocab"]) != task.src_vocab.itos:
        raise ValueError(f"the checkpoint {path.name} was trained with another source vocabulary than this "
                         "task's (a different num2words version?); retrain it with tools/train_checkpoints.py")
    model = Seq2Seq(Seq2SeqConfig(**json.loads(metadata["config"])))
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval()


def shipped(name: str) -> Path:
    """Path of a checkpoint shipped with the package, e.g. ``shipped("ch01_bottleneck")``."""
    folder = resources.files("attnbook") / "checkpoints"
    available = sorted(p.name.removesuffix(".safetensors") for p in folder.iterdir() if p.name.endswith(".safetensors"))
    if name not in available:
        raise ValueError(f"expected one of the shipped checkpoints {available}, got {name!r}")
    return Path(str(folder / f"{name}.safetensors"))
