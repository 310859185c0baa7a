"""Chapter 12's recall arena: MQAR accuracy against bytes of state, every mixer at several state sizes.

    python benchmarks/ch12_recall_arena.py                 # writes ch12_recall_arena.json and .md
    python benchmarks/ch12_recall_arena.py --pairs 16      # a harder task (64 tokens)

The defaults are chapter 12's settings (8 pairs, 400 steps of 64), so its three models
reappear here. Every model: 2 layers of width 64 (feed-forward included, learned positions), trained the
same number of Adam steps on fresh multi-query associative recall batches
(:func:`attnbook.recall.mqar_batch`), evaluated on 512 held-out sequences. The state of each
mixer is varied where it has a knob: the sliding window's width, linear attention's head
width (fewer heads, wider state), the selective scan's ``d_state``. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from attnbook.device import pick_device
from attnbook.layers import count_parameters
from attnbook.recall import RecallConfig, RecallLM, mqar_batch, recall_accuracy, state_bytes
from attnbook.training import set_seed, train

HERE = Path(__file__).resolve().parent


def arena(pairs: int) -> list[tuple[str, dict]]:
    rows = [("attention", dict(layers=("attention", "attention")))]
    rows += [("sliding window", dict(layers=("window", "window"), window=w)) for w in (4, 8, 16, 32)]
    rows += [("linear attention", dict(layers=("linear", "linear"), num_heads=h)) for h in (8, 4, 2, 1)]
    rows += [("selective scan", dict(layers=("scan", "scan"), d_state=n)) for n in (4, 16, 64)]
    rows += [("hybrid (scan, attention)", dict(layers=("scan", "attention"), d_state=16))]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=128)
    args = parser.parse_args()
    device = pick_device()
    if device.type == "cpu":
        torch.set_num_threads(1)
    length = 4 * args.pairs
    test = tuple(t.to(device) for t in mqar_batch(512, args.pairs, args.vocab,
                                                  generator=torch.Generator().manual_seed(9)))

    def batches(seed: int):
        g = torch.Generator().manual_seed(seed)
        while True:
            yield mqar_batch(args.batch, args.pairs, args.vocab, generator=g)

    def loss(model, batch):
        ids, targets = batch
        return F.cross_entropy(model(ids).flatten(0, 1), targets.flatten(), ignore_index=-100)

    rows = []
    for mixer, options in arena(args.pairs):
        set_seed(0)
        config = RecallConfig(args.vocab, length, d_model=64, **options)
        model = RecallLM(config).to(device)
        start = time.perf_counter()
        train(model, batches(0), steps=args.steps, loss_fn=loss, lr=3e-3, warmup=50, device=device,
              log_every=50, progress=False)
        kinds = set(config.layers)
        row = {"mixer": mixer, "layers": list(config.layers),
               "window": config.window if "window" in kinds else None,
               "num_heads": config.num_heads if kinds - {"scan"} else None,
               "d_state": config.d_state if "scan" in kinds else None,
               "parameters": count_parameters(model), "state bytes": state_bytes(config, length),
               "accuracy": recall_accuracy(model, *test), "seconds": round(time.perf_counter() - start, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    command = "python benchmarks/ch12_recall_arena.py" + "".join(
        f" --{k} {v}" for k, v in vars(args).items() if v != parser.get_default(k))
    out = {"command": command, "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(),
           "torch": torch.__version__, "date": dt.date.today().isoformat(), "pairs": args.pairs,
           "steps": args.steps, "batch": args.batch, "vocab": args.vocab, "rows": rows}
    (HERE / "ch12_recall_arena.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = ["# Chapter 12: recall arena (MQAR)", "", f"`{command}` on {out['device']}, {out['date']}; "
             f"{args.pairs} pairs ({length} tokens), {args.steps} steps of {args.batch}.", "",
             "| mixer | window | heads | d_state | parameters | state bytes (fp16) | accuracy |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['mixer']} | {r['window'] or ''} | {r['num_heads'] or ''} | {r['d_state'] or ''} | {r['parameters']:,} | "
              f"{r['state bytes']:,} | {r['accuracy']:.3f} |" for r in rows]
    (HERE / "ch12_recall_arena.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
