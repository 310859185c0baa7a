"""Chapter 6's GPT recipe search: held-out loss after a fixed number of steps, per recipe.

    python benchmarks/ch06_gpt_recipe.py                 # every recipe below (long on a CPU)
    python benchmarks/ch06_gpt_recipe.py --only "2 layers"  # recipes whose name contains this
    python benchmarks/ch06_gpt_recipe.py --quick         # 20 steps each, to try the script

The data, split and evaluation are chapter 6's: Python's ``pydoc_data.topics`` text,
characters, the first 90% for training; held-out loss in nats per character over 200
windows of the model's context from the last 10% (the same generator seed as the
chapter). Every recipe trains the package's ``GPT`` (fused attention, no dropout unless said) with
``attnbook.training.train`` (Adam, linear warm-up, cosine decay to a tenth of the peak,
gradients clipped at norm 1), seed 0, on one CPU thread.

Loss after a number of steps does not depend on the machine, so recipes can be compared
on a busy one; the seconds do, so they are recorded but only comparable between
recipes measured together on a quiet machine (benchmarks/gpt_speed.py measures steps/s
properly). Writes benchmarks/ch06_gpt_recipe.json and .md; a recipe already in the JSON
is not rerun.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import pydoc_data.topics
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from attnbook.gpt import GPT, GPTConfig  # noqa: E402
from attnbook.training import set_seed, train  # noqa: E402

COMMAND = "python benchmarks/ch06_gpt_recipe.py"
NANOGPT = dict(lr=1e-3, batch=12, block=64, d_model=128, layers=4, heads=4, warmup=100, tie=False, dropout=0.0)
RECIPES = [  # (changes to nanoGPT's CPU recipe, steps); named by recipe_name()
    ({}, 2000),  # nanoGPT's own: 1.42 after 2,236 steps with nanoGPT's code (issue 14)
    (dict(lr=3e-3), 2000),
    (dict(lr=5e-3), 2400),
    (dict(lr=3e-3, block=128, batch=6), 2000),
    (dict(lr=3e-3, layers=3, batch=16), 2400),
    (dict(lr=4e-3, layers=3, batch=16), 2400),
    (dict(lr=3e-3, layers=2, batch=24), 2400),  # chapter 6's recipe
    (dict(lr=3e-3, layers=2, batch=24, dropout=0.1), 2400),  # does dropout help it?
]


def load_text() -> tuple[torch.Tensor, torch.Tensor, int]:
    topics = pydoc_data.topics.topics
    text = "\n\n".join(topics[key] for key in sorted(topics))
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text])
    split = int(0.9 * len(data))
    return data[:split], data[split:], len(chars)


def windows(source: torch.Tensor, batch: int, block: int, generator: torch.Generator):
    starts = torch.randint(0, len(source) - block - 1, (batch,), generator=generator)
    index = starts[:, None] + torch.arange(block)  # (B, block)
    return source[index], source[index + 1]


def recipe_name(recipe: dict) -> str:
    r = {**NANOGPT, **recipe}
    name = f"lr {r['lr']:g}, {r['layers']} layers, batch {r['batch']}, block {r['block']}"
    return name + (f", dropout {r['dropout']:g}" if r["dropout"] else "")


def run(recipe: dict, steps: int, train_data, heldout_data, vocab: int) -> dict:
    r = {**NANOGPT, **recipe}
    set_seed(0)
    model = GPT(GPTConfig(vocab, r["block"], r["d_model"], r["heads"], r["layers"], attention="fused",
                          dropout=r["dropout"], tie_weights=r["tie"]))
    heldout = windows(heldout_data, 200, r["block"], torch.Generator().manual_seed(1))

    @torch.no_grad()
    def heldout_loss(m) -> float:
        x, y = heldout
        return sum(m.loss(x[i:i + 50], y[i:i + 50]).item() for i in range(0, 200, 50)) / 4

    def batches():
        g = torch.Generator().manual_seed(0)
        while True:
            yield windows(train_data, r["batch"], r["block"], g)

    every = next(e for e in (400, 500, 250, 100, steps) if steps % e == 0)  # the last step is evaluated too
    history = train(model, batches(), steps=steps, loss_fn=lambda m, b: m.loss(*b), lr=r["lr"],
                    warmup=r["warmup"], log_every=50, eval_every=every, eval_fn=heldout_loss, progress=False)
    assert history.eval_step[-1] == steps
    return {"recipe": r, "steps": steps, "heldout_by_step": dict(zip(map(str, history.eval_step),
                                                                   history.eval_metric)),
            "heldout": history.eval_metric[-1], "seconds": round(history.seconds, 1)}


def markdown(result: dict) -> str:
    lines = [f"# Chapter 6: GPT recipes at a fixed number of steps ({result['device']})", "",
             f"Regenerate with `{COMMAND}`. Held-out nats per character over 200 windows; {result['date']}, "
             f"PyTorch {result['torch']}. Seconds were measured on a busy machine: compare losses, not times.",
             "", "| recipe | steps | held-out loss | held-out loss by step |", "|---|---|---|---|"]
    for name, row in result["runs"].items():
        by_step = ", ".join(f"{s}: {v:.3f}" for s, v in row["heldout_by_step"].items())
        lines.append(f"| {name} | {row['steps']} | {row['heldout']:.3f} | {by_step} |")
    if "reference" in result:
        lines += ["", f"Reference: {result['reference']}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run only the recipes whose name contains this")
    parser.add_argument("--markdown", action="store_true", help="only rewrite the .md from the JSON")
    parser.add_argument("--quick", action="store_true", help="20 steps each, written to /tmp")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path("/tmp/ch06_gpt_recipe_quick.json") if args.quick else ROOT / "benchmarks" / "ch06_gpt_recipe.json"
    result = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    result.update(command=COMMAND, device="CPU, 1 thread", torch=torch.__version__,
                  date=dt.date.today().isoformat())
    if args.markdown:
        out.with_suffix(".md").write_text(markdown(result))
        return 0
    data = load_text()
    for recipe, steps in RECIPES:
        name = recipe_name(recipe)
        if args.only not in name or name in result["runs"]:
            continue
        result["runs"][name] = run(recipe, 20 if args.quick else steps, *data)
        print(f"{name}: {result['runs'][name]['heldout']:.3f} ({result['runs'][name]['seconds']} s)", flush=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        if not args.quick:
            out.with_suffix(".md").write_text(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
