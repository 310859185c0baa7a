"""Chapter 6's equal-budget comparison: the encoder-decoder transformer vs chapter 2's Bahdanau model.

    python benchmarks/ch06_seq2seq_sweep.py            # the full sweep (hours on 1 busy CPU thread)
    python benchmarks/ch06_seq2seq_sweep.py --quick    # a few short runs, to try the script

Both models train on Part I's task (``NumberTask(max_digits=12, seed=0)``) with batch 128,
Adam, gradient clipping at 1 and the package's warm-up + cosine schedule
(``attnbook.training.train``), seed 0. Chapter 2's Bahdanau model is exactly the shipped
``ch02_bahdanau`` recipe (``attnbook.training.train_seq2seq``); the transformer is
chapter 6's (d 64, 4 heads, 2 + 2 blocks, feed-forward width 128, 30 warm-up steps).

1. **Learning rates.** Each model is trained for 700 steps (Part I's budget) at a few
   learning rates; each keeps the one with the best exact match on the *validation*
   split. (Bahdanau at 700 steps and 5e-3 is exactly the shipped checkpoint: it is
   loaded, not retrained.)
2. **Steps.** Each model, at its own tuned learning rate, is trained from scratch for
   250 to 4,000 steps (each run with its own schedule, so a short run is not the
   prefix of a long one); exact match on the *test* split, by number of digits.

Writes benchmarks/ch06_seq2seq_sweep.json (read by chapter 6) and a Markdown table next
to it. The JSON is rewritten after every run, and a run already in it is not repeated,
so an interrupted sweep resumes where it stopped. Accuracies do not depend on the machine
(seeded, one thread); the seconds do, and on what else was running.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from attnbook.checkpoints import load_seq2seq, shipped  # noqa: E402
from attnbook.evaluation import exact_match_by_length  # noqa: E402
from attnbook.rnn import Seq2Seq, Seq2SeqConfig, count_parameters  # noqa: E402
from attnbook.tasks import NumberTask  # noqa: E402
from attnbook.training import cycle, seq2seq_loss, set_seed, train  # noqa: E402
from attnbook.transformer import EncoderDecoderTransformer, TransformerConfig  # noqa: E402

BATCH = 128
LR_STEPS = 700
LRS = {"bahdanau": [2e-3, 5e-3, 1e-2], "transformer": [1e-3, 3e-3, 5e-3, 1e-2, 2e-2]}
STEPS = [250, 700, 2000, 4000, 500, 1000]  # in the order they are run (the most telling first)
WARMUP = {"bahdanau": 0, "transformer": 30}
COMMAND = "python benchmarks/ch06_seq2seq_sweep.py"


def build(name: str, task: NumberTask) -> torch.nn.Module:
    set_seed(0)
    if name == "bahdanau":  # chapter 2's model, as tools/train_checkpoints.py builds it
        return Seq2Seq(Seq2SeqConfig(len(task.src_vocab), len(task.tgt_vocab), embed_dim=64, hidden_dim=64,
                                     attention="additive", attention_dim=64))
    return EncoderDecoderTransformer(TransformerConfig(len(task.src_vocab), len(task.tgt_vocab), d_model=64,
                                                       num_heads=4, num_encoder_layers=2,
                                                       num_decoder_layers=2, d_ff=128))


def run(name: str, task: NumberTask, steps: int, lr: float) -> dict:
    out = {"model": name, "steps": steps, "lr": lr, "batch": BATCH, "warmup": WARMUP[name]}
    if (name, steps, lr) == ("bahdanau", 700, 5e-3):  # exactly the shipped checkpoint's recipe: load it
        model = load_seq2seq(shipped("ch02_bahdanau"), task)
        out.update(source="shipped checkpoint ch02_bahdanau (tools/train_checkpoints.py, the same recipe)",
                   train_seconds=None, seconds_per_step=None)
    else:
        model = build(name, task)
        history = train(model, cycle(lambda epoch: task.batches("train", BATCH, seed=epoch)), steps=steps,
                        loss_fn=seq2seq_loss, lr=lr, warmup=WARMUP[name], seed=0, device="cpu", progress=False)
        out.update(source="trained by this script", train_seconds=round(history.seconds, 2),
                   seconds_per_step=round(history.seconds / steps, 4), final_train_loss=history.final_loss)
    out["parameters"] = count_parameters(model)
    for split in ("valid", "test"):
        table = exact_match_by_length(model, task, split).set_index("digits").exact_match
        out[f"{split}_exact_match"] = float(table.mean())
        out[f"{split}_by_digits"] = {str(int(k)): float(v) for k, v in table.items()}
    return out


def markdown(result: dict) -> str:
    lines = [f"# Chapter 6: transformer vs Bahdanau at equal steps and batch ({result['device']})", "",
             f"Regenerate with `{COMMAND}`. Batch {BATCH}, seed 0, 1 CPU thread; {result['date']}, "
             f"PyTorch {result['torch']}.", "", f"## Learning rates at {LR_STEPS} steps (validation exact match)",
             "", "| model | lr | valid exact match | test exact match | test, 12 digits |", "|---|---|---|---|---|"]
    for r in result["lr_sweep"]:
        lines.append(f"| {r['model']} | {r['lr']:g} | {r['valid_exact_match']:.3f} | {r['test_exact_match']:.3f} "
                     f"| {r['test_by_digits']['12']:.3f} |")
    lines += ["", "Tuned: " + ", ".join(f"{k} {v:g}" for k, v in result["tuned_lr"].items()), "",
              "## Steps (test exact match, each at its tuned learning rate)", "",
              "| model | steps | all lengths | 12 digits | seconds per step |", "|---|---|---|---|---|"]
    for r in sorted(result["step_sweep"], key=lambda r: (r["model"], r["steps"])):
        per_step = "shipped" if r["seconds_per_step"] is None else f"{r['seconds_per_step']:.3f}"
        lines.append(f"| {r['model']} | {r['steps']} | {r['test_exact_match']:.3f} | {r['test_by_digits']['12']:.3f} "
                     f"| {per_step} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few short runs (not written to the JSON)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "ch06_seq2seq_sweep.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    lrs, lr_steps, steps = (LRS, LR_STEPS, STEPS) if not args.quick else (
        {"bahdanau": [5e-3], "transformer": [3e-3]}, 20, [10, 20])
    out = Path(args.out if not args.quick else "/tmp/ch06_seq2seq_sweep_quick.json")
    result = json.loads(out.read_text()) if out.exists() else {}
    result.update({"command": COMMAND, "device": f"CPU ({platform.processor() or platform.machine()}), 1 thread",
                   "torch": torch.__version__, "date": dt.date.today().isoformat(), "batch": BATCH,
                   "lr_steps": lr_steps})
    result.setdefault("lr_sweep", [])
    result.setdefault("step_sweep", [])
    task = NumberTask(max_digits=12, seed=0)

    def done(table: str, name: str, n: int, lr: float) -> dict | None:
        return next((r for r in result[table] if (r["model"], r["steps"], r["lr"]) == (name, n, lr)), None)

    def save() -> None:
        out.write_text(json.dumps(result, indent=1) + "\n")
        if "tuned_lr" in result and not args.quick:
            out.with_suffix(".md").write_text(markdown(result))

    for name in ("transformer", "bahdanau"):
        for lr in lrs[name]:
            if done("lr_sweep", name, lr_steps, lr) is None:
                start = time.perf_counter()
                result["lr_sweep"].append(run(name, task, lr_steps, lr))
                r = result["lr_sweep"][-1]
                print(f"{name} lr {lr:g}: valid {r['valid_exact_match']:.3f} test {r['test_exact_match']:.3f} "
                      f"({time.perf_counter() - start:.0f} s)", flush=True)
                save()
    result["tuned_lr"] = {name: max((r for r in result["lr_sweep"] if r["model"] == name and r["lr"] in lrs[name]
                                     and r["steps"] == lr_steps), key=lambda r: r["valid_exact_match"])["lr"]
                          for name in lrs}
    result["step_sweep"] = [r for r in result["step_sweep"] if r["lr"] == result["tuned_lr"][r["model"]]]
    save()
    for n in steps:
        for name in ("transformer", "bahdanau"):
            lr = result["tuned_lr"][name]
            if done("step_sweep", name, n, lr) is None and done("lr_sweep", name, n, lr) is not None:
                result["step_sweep"].append(done("lr_sweep", name, n, lr))  # the same run
            if done("step_sweep", name, n, lr) is None:
                start = time.perf_counter()
                result["step_sweep"].append(run(name, task, n, lr))
                r = result["step_sweep"][-1]
                print(f"{name} {n} steps at lr {lr:g}: test {r['test_exact_match']:.3f}, 12 digits "
                      f"{r['test_by_digits']['12']:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
                save()
    save()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
