"""Chapter 6's GPT recipe search: held-out loss after a fixed number of steps, per recipe.

    python benchmarks/ch06_gpt_recipe.py                 # every recipe below (long on a CPU)
    python benchmarks/ch06_gpt_recipe.py --only "2 layers"  # recipes whose name contains this
    python benchmarks/ch06_gpt_recipe.py --quick         # 20 steps each, to try the script

The data, split and evaluation are chapter 6's: Python's ``pydoc_data.topics`` text,
characters, the first 90% for training; held-out loss in nats per character over 200
windows of the model's context from the last 10% (the same generator seed as the
chapter). Every recipe trains the package's ``GPT`` (fused attention, no dropout unless said) with
``attnbook.training.train`` (Adam, linear warm-up, cosine decay to a tenth of the peak
unless said, gradients clipped at norm 1 unless said), seed 0 (``--seeds``), on one CPU thread.

Loss after a number of steps does not depend on the machine, so recipes can be compared
on a busy one; the seconds do, so they are recorded but only comparable between
recipes measured together on a quiet machine (benchmarks/gpt_speed.py measures steps/s
properly; ``--speed`` times every recipe's shape against the chapter's old one, interleaved).
Writes benchmarks/ch06_gpt_recipe.json and .md; a run already in the JSON is not rerun;
``--shard I N`` splits the recipes between parallel processes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import pydoc_data.topics
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from attnbook.gpt import GPT, GPTConfig  # noqa: E402
from attnbook.training import set_seed, train  # noqa: E402

COMMAND = "python benchmarks/ch06_gpt_recipe.py"
NANOGPT = dict(lr=1e-3, batch=12, block=64, d_model=128, layers=4, heads=4, warmup=100, tie=False, dropout=0.0)
EXTRA = dict(d_ff=None, beta2=0.999, min_lr=0.1, clip=1.0, attention="fused")  # train()'s defaults; named only when changed
CHAPTER = dict(lr=3e-3, layers=2, batch=24)  # the chapter's recipe before this search (1,000 steps: 1.408)
RECIPES = [  # (changes to nanoGPT's CPU recipe, steps); named by recipe_name()
    ({}, 2000),  # nanoGPT's own: 1.42 after 2,236 steps with nanoGPT's code (issue 14)
    (dict(lr=3e-3), 2000),
    (dict(lr=5e-3), 2400),
    (dict(lr=3e-3, block=128, batch=6), 2000),
    (dict(lr=3e-3, layers=3, batch=16), 2400),
    (dict(lr=4e-3, layers=3, batch=16), 2400),
    (dict(lr=3e-3, layers=2, batch=24), 2400),  # chapter 6's recipe
    (dict(lr=3e-3, layers=2, batch=24, dropout=0.1), 2400),  # does dropout help it?
    # at the chapter's budget: about a minute of the 2-core CPU, steps = 1,000 x the shape's relative speed
    (CHAPTER, 1000),
    ({**CHAPTER, "lr": 6e-3}, 1000),
    ({**CHAPTER, "beta2": 0.95, "min_lr": 0.02}, 1000),
    (dict(lr=3e-3, layers=2, batch=64, d_model=64), 1050),
    (dict(lr=6e-3, layers=2, batch=64, d_model=64), 1050),
    (dict(lr=3e-3, layers=2, batch=40, d_model=96), 950),
    (dict(lr=3e-3, layers=2, batch=32, d_ff=256), 1100),
    (dict(lr=3e-3, layers=1, batch=48), 900),
    # second round, around the best of the first (a narrower feed-forward layer, more windows per step)
    (dict(lr=5e-3, layers=2, batch=32, d_ff=256), 1100),
    (dict(lr=3e-3, layers=2, batch=40, d_ff=128), 1100),
    (dict(lr=3e-3, layers=2, batch=32, d_ff=256, tie=True), 1100),
    (dict(lr=1e-2, layers=2, batch=64, d_model=64), 1050),
]
SHAPES = [  # timed by --speed, to size the steps of recipes at the chapter's budget
    dict(layers=2, batch=24, clip=None),
    dict(layers=1, batch=48), dict(layers=1, batch=32), dict(layers=2, batch=32), dict(layers=2, batch=16),
    dict(layers=2, batch=40, d_model=96), dict(layers=2, batch=64, d_model=64),
    dict(layers=2, batch=32, d_ff=256), dict(layers=3, batch=32, d_model=96),
    dict(layers=2, batch=24, tie=True),
    dict(layers=2, batch=32, d_ff=256, attention="scratch"), dict(layers=2, batch=24, attention="scratch"),
]
# second-round shapes were sized by their multiply-adds per step before they were timed: per character and
# layer about 4d^2 (projections) + 2 d d_ff (feed-forward) + 2 T d (attention), plus V d for the read-out


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
    r = {**NANOGPT, **EXTRA, **recipe}
    name = f"lr {r['lr']:g}, {r['layers']} layers, batch {r['batch']}, block {r['block']}"
    name += f", d {r['d_model']}" if r["d_model"] != NANOGPT["d_model"] else ""
    name += f", d_ff {r['d_ff']}" if r["d_ff"] is not None else ""
    name += f", warm-up {r['warmup']}" if r["warmup"] != NANOGPT["warmup"] else ""
    name += f", beta2 {r['beta2']:g}" if r["beta2"] != EXTRA["beta2"] else ""
    name += f", final lr {r['min_lr']:g} of peak" if r["min_lr"] != EXTRA["min_lr"] else ""
    name += ", no clipping" if r["clip"] is None else ""
    name += ", tied" if r["tie"] else ""
    name += f", {r['attention']} attention" if r["attention"] != EXTRA["attention"] else ""
    return name + (f", dropout {r['dropout']:g}" if r["dropout"] else "")


def build(r: dict, vocab: int) -> GPT:
    return GPT(GPTConfig(vocab, r["block"], r["d_model"], r["heads"], r["layers"], d_ff=r["d_ff"],
                         attention=r["attention"], dropout=r["dropout"], tie_weights=r["tie"]))


def run(recipe: dict, steps: int, train_data, heldout_data, vocab: int, seed: int = 0) -> dict:
    r = {**NANOGPT, **EXTRA, **recipe}
    set_seed(seed)
    model = build(r, vocab)
    heldout = windows(heldout_data, 200, r["block"], torch.Generator().manual_seed(1))

    @torch.no_grad()
    def heldout_loss(m) -> float:
        x, y = heldout
        return sum(m.loss(x[i:i + 50], y[i:i + 50]).item() for i in range(0, 200, 50)) / 4

    def batches():
        g = torch.Generator().manual_seed(seed)
        while True:
            yield windows(train_data, r["batch"], r["block"], g)

    every = next(e for e in (400, 500, 250, 100, steps) if steps % e == 0)  # the last step is evaluated too
    history = train(model, batches(), steps=steps, loss_fn=lambda m, b: m.loss(*b), lr=r["lr"],
                    warmup=min(r["warmup"], steps), log_every=50, eval_every=every, eval_fn=heldout_loss, progress=False,
                    seed=seed, clip=r["clip"], betas=(0.9, r["beta2"]), min_lr_ratio=r["min_lr"])
    assert history.eval_step[-1] == steps
    return {"recipe": r, "steps": steps, "seed": seed, "tokens_per_step": r["batch"] * r["block"],
            "heldout_by_step": dict(zip(map(str, history.eval_step), history.eval_metric)),
            "heldout": history.eval_metric[-1], "seconds": round(history.seconds, 1)}


def relative_speed(recipes: list[dict], train_data, vocab: int, seconds: float, rounds: int = 3) -> dict:
    """Steps/s of each recipe's training step relative to the chapter's old recipe, interleaved.

    Every recipe's model and optimizer are built in this one process; in each round the
    models take turns step by step for about ``seconds`` each, so machine load slows all
    of them alike and the ratios stay meaningful on a busy machine.
    """
    shapes = [CHAPTER] + [x for x in recipes if shape_name(x) != shape_name(CHAPTER)]
    runs = []
    for recipe in shapes:
        r = {**NANOGPT, **EXTRA, **recipe}
        torch.manual_seed(0)
        model = build(r, vocab).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, r["beta2"]))
        runs.append(dict(name=shape_name(recipe), r=r, model=model, opt=opt, g=torch.Generator().manual_seed(0),
                         steps=0, seconds=0.0))

    def step(run):
        x, y = windows(train_data, run["r"]["batch"], run["r"]["block"], run["g"])
        start = time.perf_counter()
        loss = run["model"].loss(x, y)
        run["opt"].zero_grad(set_to_none=True)
        loss.backward()
        if run["r"]["clip"] is not None:
            torch.nn.utils.clip_grad_norm_(run["model"].parameters(), run["r"]["clip"])
        run["opt"].step()
        return time.perf_counter() - start

    for run in runs:  # warm-up, not timed
        for _ in range(3):
            step(run)
    for _ in range(rounds):
        start = time.perf_counter()
        while time.perf_counter() - start < seconds * len(runs):
            for run in runs:
                run["seconds"] += step(run)
                run["steps"] += 1
    base = runs[0]["steps"] / runs[0]["seconds"]
    return {run["name"]: {"steps_per_s": round(run["steps"] / run["seconds"], 2),
                          "relative": round(run["steps"] / run["seconds"] / base, 3),
                          "tokens_per_step": run["r"]["batch"] * run["r"]["block"]} for run in runs}


def markdown(result: dict) -> str:
    speed = result.get("speed", {})
    lines = [f"# Chapter 6: GPT recipes at a fixed number of steps ({result['device']})", "",
             f"Regenerate with `{COMMAND}` (`--speed 2` for the speed table). Held-out nats per character "
             f"over 200 windows of 64 characters; {result['date']}, PyTorch {result['torch']}. The loss after a "
             "number of steps does not depend on the machine; seconds do, and were measured on a busy one, "
             "so the speed of each shape is measured separately, relative to the chapter's old shape "
             "(2 layers, d 128, batch 24), all shapes interleaved step by step in one process.",
             "", "The chapter's budget is about a minute of the quiet 2-core CPU: the old shape's 1,000 "
             "steps; a recipe at that budget gets 1,000 x its shape's relative speed.",
             "", "| recipe | steps | characters per step | relative steps/s | held-out loss | by step |",
             "|---|---|---|---|---|---|"]
    for name, row in sorted(result["runs"].items(), key=lambda kv: (kv[1]["steps"] > 1200, kv[0])):
        by_step = ", ".join(f"{s}: {v:.3f}" for s, v in row["heldout_by_step"].items())
        final = "not finished" if row["heldout"] is None else f"{row['heldout']:.3f}"
        r = row["recipe"]
        rel = speed.get(shape_name(r), {}).get("relative")
        lines.append(f"| {name} | {row['steps']} | {r['batch'] * r['block']} | "
                     f"{'' if rel is None else f'{rel:.2f}'} | {final} | {by_step} |")
    if speed:
        lines += ["", "## Relative speed of each shape (1 thread, interleaved with the first recipe's shape)", "",
                  "| shape | steps/s (busy machine) | relative | characters/s relative | load average (2 cores) |",
                  "|---|---|---|---|---|"]
        base = next(iter(speed.values()))
        for name, row in speed.items():
            chars = row["relative"] * row["tokens_per_step"] / base["tokens_per_step"]
            load = row.get("load", result.get("speed_load"))
            lines.append(f"| {name} | {row['steps_per_s']} | {row['relative']:.2f} | {chars:.2f} | {load} |")
    lines += [""] + [f"* {note}" for note in result.get("notes", [])]
    lines += ["", "Reference: nanoGPT's own model with its CPU recipe (lr 1e-3, 4 layers, batch 12): 1.42 after "
              "2,236 steps (55 s) and about 1.26 after 4,000 on the quiet 2-core machine (issue 14)."]
    return "\n".join(lines) + "\n"


def run_key(recipe: dict, steps: int, seed: int = 0) -> str:
    return f"{recipe_name(recipe)}; {steps} steps" + (f"; seed {seed}" if seed else "")


def shape_name(recipe: dict) -> str:
    """What sets the time per step: the model's shape, the batch, and clipping."""
    r = {**NANOGPT, **EXTRA, **recipe}
    name = f"{r['layers']} layers, d {r['d_model']}, d_ff {r['d_ff'] or 4 * r['d_model']}, batch {r['batch']}"
    name += f", block {r['block']}" + (", no clipping" if r["clip"] is None else "")
    name += f", {r['attention']} attention" if r["attention"] != EXTRA["attention"] else ""
    return name + (", tied" if r["tie"] else "") + (f", dropout {r['dropout']:g}" if r["dropout"] else "")


def save(out: Path, update) -> dict:
    """Merge into the JSON on disk (several runs of this script may share it)."""
    result = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    update(result)
    out.write_text(json.dumps(result, indent=1) + "\n")
    if not out.name.endswith("_quick.json"):
        out.with_suffix(".md").write_text(markdown(result))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run only the recipes whose name contains this")
    parser.add_argument("--markdown", action="store_true", help="only rewrite the .md from the JSON")
    parser.add_argument("--quick", action="store_true", help="20 steps each, written to /tmp")
    parser.add_argument("--speed", type=float, default=0.0, metavar="SECONDS",
                        help="only time every recipe's shape, interleaved, SECONDS per shape per round")
    parser.add_argument("--shard", type=int, nargs=2, default=[0, 1], metavar=("I", "N"),
                        help="run only every N-th recipe, starting at the I-th (for parallel processes)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --speed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of each run (default 0)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path("/tmp/ch06_gpt_recipe_quick.json") if args.quick else ROOT / "benchmarks" / "ch06_gpt_recipe.json"
    meta = dict(command=COMMAND, device="CPU, 1 thread", torch=torch.__version__, date=dt.date.today().isoformat())
    if args.markdown:
        save(out, lambda result: result.update(meta))
        return 0
    data = load_text()
    if args.speed:
        shapes = {shape_name(recipe): recipe for recipe, _ in RECIPES + [(x, 0) for x in SHAPES]}
        wanted = args.only.split("|")  # --only "a|b": the shapes whose name contains a or b
        shapes = {name: x for name, x in shapes.items() if any(w in name for w in wanted)}
        speed = relative_speed(list(shapes.values()), data[0], data[2], args.speed, args.rounds)
        load = round(os.getloadavg()[0], 1)
        for name, row in speed.items():
            row["load"] = load
            print(f"{name}: {row}", flush=True)
        save(out, lambda result: (result.update(meta, speed_load=load),
                                  result.setdefault("speed", {}).update(speed)))
        return 0
    for index, (recipe, steps) in enumerate(RECIPES):
        if index % args.shard[1] != args.shard[0]:
            continue
        for seed in args.seeds:
            key = run_key(recipe, steps, seed)
            done = json.loads(out.read_text())["runs"] if out.exists() else {}
            if args.only not in key or key in done:
                continue
            row = run(recipe, 20 if args.quick else steps, *data, seed=seed)
            print(f"{key}: {row['heldout']:.3f} ({row['seconds']} s)", flush=True)
            save(out, lambda result: (result.update(meta), result["runs"].update({key: row})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
