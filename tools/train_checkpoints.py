"""Train the checkpoints the package ships, with exactly the chapters' settings.

    python tools/train_checkpoints.py

ch01_bottleneck: chapter 1's encoder-decoder without attention (H=64), trained with
Part I's budget (`attnbook.training.train_seq2seq` defaults, seed 0) on
`NumberTask(max_digits=12, seed=0)`. Chapter 2 loads it to compare against.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from attnbook.checkpoints import save_seq2seq
from attnbook.evaluation import exact_match_by_length
from attnbook.rnn import Seq2SeqConfig
from attnbook.tasks import NumberTask
from attnbook.training import train_seq2seq

OUT = Path(__file__).resolve().parent.parent / "src" / "attnbook" / "checkpoints"


def main() -> int:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    task = NumberTask(max_digits=12, seed=0)
    config = Seq2SeqConfig(len(task.src_vocab), len(task.tgt_vocab), embed_dim=64, hidden_dim=64, attention="none")
    model, history = train_seq2seq(task, config, device="cpu", progress=False)
    table = exact_match_by_length(model, task, "test")
    print(table.to_string(index=False))
    save_seq2seq(model, OUT / "ch01_bottleneck.safetensors", task, trained_by="tools/train_checkpoints.py",
                 steps=str(history.steps_done), torch=torch.__version__)
    print(f"saved {OUT / 'ch01_bottleneck.safetensors'} ({history.seconds:.1f} s of training)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
