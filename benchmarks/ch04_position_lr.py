"""Chapter 4's reversal experiment at other learning rates: is one rate for all four variants fair?

    python benchmarks/ch04_position_lr.py              # 4 variants x 3 learning rates, seed 0
    python benchmarks/ch04_position_lr.py --seeds 0 1

The chapter trains its tiny model with no positions, sinusoidal, learned and rotary
positions at one constant learning rate (3e-3, 300 Adam steps of 128 sequences). This
script runs the chapter's own code (its import cell and the cell defining the task and
``TinyTransformer``, executed from the notebook, so there is one implementation) at
1e-3, 3e-3 and 1e-2 and records the held-out token and sequence accuracy of each run.
Writes benchmarks/ch04_position_lr.json and .md. Accuracies do not depend on the
machine (seeded, one thread); nothing here is timed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "04_self_attention_position.ipynb"
CELLS = ("7b41de2c", "dd6f8ec1")  # the imports, the task and TinyTransformer
VARIANTS = ("none", "sinusoidal", "learned", "rope")
LRS = (1e-3, 3e-3, 1e-2)
STEPS = 300
OUT = ROOT / "benchmarks" / "ch04_position_lr.json"


def chapter_namespace() -> dict:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = {c.get("id"): c.source for c in nb.cells}
    namespace: dict = {}
    for cell_id in CELLS:
        exec(cells[cell_id], namespace)  # noqa: S102 - the repository's own notebook
    return namespace


def run(ns: dict, positions: str, lr: float, seed: int) -> dict:
    torch = ns["torch"]
    torch.set_num_threads(1)
    test_x, test_y = ns["reversal_batch"](2000, torch.Generator().manual_seed(123))
    ns["set_seed"](seed)
    model = ns["TinyTransformer"](positions)
    history = ns["train"](model, ns["reversal_batches"](seed), steps=STEPS, loss_fn=ns["reversal_loss"],
                          lr=lr, schedule="constant", clip=None, device=torch.device("cpu"), progress=False)
    with torch.no_grad():
        correct = (model(test_x).argmax(-1) == test_y).float()
    return {"positions": positions, "lr": lr, "seed": seed, "final_loss": history.last_loss,
            "token_accuracy": correct.mean().item(), "sequence_accuracy": correct.min(1).values.mean().item()}


def render(runs: list[dict]) -> str:
    lines = ["# Chapter 4: reversal accuracy by learning rate", "",
             f"Written by `python benchmarks/ch04_position_lr.py`; {STEPS} Adam steps of 128 sequences, "
             "constant learning rate, the chapter's model and data. Token accuracy (sequence accuracy).", "",
             "| positions | seed | " + " | ".join(f"lr {lr:g}" for lr in LRS) + " |",
             "|---|---|" + "---|" * len(LRS)]
    for seed in sorted({r["seed"] for r in runs}):
        for positions in VARIANTS:
            cells = []
            for lr in LRS:
                r = next((r for r in runs if (r["positions"], r["lr"], r["seed"]) == (positions, lr, seed)), None)
                cells.append("" if r is None else f"{r['token_accuracy']:.3f} ({r['sequence_accuracy']:.2f})")
            lines.append(f"| {positions} | {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ns = chapter_namespace()
    runs = []
    for seed in args.seeds:
        for lr in LRS:
            for positions in VARIANTS:
                runs.append(run(ns, positions, lr, seed))
                print(json.dumps(runs[-1]), flush=True)
    OUT.write_text(json.dumps({"date": dt.date.today().isoformat(), "steps": STEPS, "runs": runs}, indent=1) + "\n")
    OUT.with_suffix(".md").write_text(render(runs))
    print(f"wrote {OUT.relative_to(ROOT)} and its .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
