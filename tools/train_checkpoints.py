"""Train the checkpoints the package ships, with exactly the chapters' settings.

    python tools/train_checkpoints.py [name ...]   (default: all)

ch01_bottleneck: chapter 1's encoder-decoder without attention (H=64), trained with
Part I's budget (`attnbook.training.train_seq2seq` defaults, seed 0) on
`NumberTask(max_digits=12, seed=0)`. Chapter 2 loads it to compare against.

ch02_bahdanau: chapter 2's encoder-decoder with additive (Bahdanau) attention
(embed_dim=64, hidden_dim=64, attention_dim=64), trained with the same budget on the same
task. Chapter 6 loads it to compare the transformer against.
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
    names = sys.argv[1:] or ["ch01_bottleneck", "ch02_bahdanau"]
    settings = {"ch01_bottleneck": dict(attention="none"),
                "ch02_bahdanau": dict(attention="additive", attention_dim=64)}
    for name in names:
        if name not in settings:
            raise SystemExit(f"expected checkpoint names among {sorted(settings)}, got {name!r}")
        config = Seq2SeqConfig(len(task.src_vocab), len(task.tgt_vocab), embed_dim=64, hidden_dim=64,
                               **settings[name])
        model, history = train_seq2seq(task, config, device="cpu", progress=False)
        table = exact_match_by_length(model, task, "test")
        print(name)
        print(table.to_string(index=False))
        save_seq2seq(model, OUT / f"{name}.safetensors", task, trained_by="tools/train_checkpoints.py",
                     steps=str(history.steps_done), torch=torch.__version__)
        print(f"saved {OUT / f'{name}.safetensors'} ({history.seconds:.1f} s of training)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
