"""Chapter 6's GPT: levers the recipe search (ch06_gpt_recipe.py) did not try, at the chapter's budget.

    python benchmarks/ch06_gpt_levers.py --runs [--only NAME] [--seeds 0 1 2]  # held-out loss per lever
    python benchmarks/ch06_gpt_levers.py --speed 3       # steps/s of each lever relative to the recipe
    python benchmarks/ch06_gpt_levers.py --compile       # torch.compile: compile seconds and steps/s
    python benchmarks/ch06_gpt_levers.py --markdown      # rewrite the .md from the JSON

Data, split, held-out windows and model as in ch06_gpt_recipe.py. The chapter's recipe
(2 blocks, d 128, d_ff 256, 32 windows of 64 characters, Adam at 3e-3, 100 warm-up steps,
cosine to a tenth, clip 1, fused attention) trains 1,100 steps in about a minute of the
quiet 2-core CPU. A lever counts if all of seeds 0, 1, 2 reach a held-out loss of at most
1.30 within its budget: 1,100 steps x its speed relative to the recipe, both measured
in one process, taking turns step by step (1 thread), so machine load slows both alike.

The levers: Muon (attnbook.optim; ``optimizer="muon"`` of attnbook.training.train) for the
hidden matrices with Adam for the rest, its learning rates, a shorter warm-up, QK-norm,
tied read-out, and torch.compile of the model (its compile time counts against the budget;
each measurement uses a fresh, empty TORCHINDUCTOR_CACHE_DIR).
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from ch06_gpt_recipe import load_text, windows  # noqa: E402

from attnbook.gpt import GPT, GPTConfig  # noqa: E402
from attnbook.training import set_seed, train  # noqa: E402

OUT = HERE / "ch06_gpt_levers.json"
COMMAND = "python benchmarks/ch06_gpt_levers.py"
RECIPE = dict(lr=3e-3, layers=2, batch=32, block=64, d_model=128, heads=4, d_ff=256, warmup=100, tie=False,
              qk_norm=False, optimizer="adam", muon_lr=0.02, min_lr=0.1, beta2=0.999)
LEVERS = {  # name -> changes to the chapter's recipe
    "recipe (Adam)": {},
    "Muon 0.02": dict(optimizer="muon", muon_lr=0.02),
    "Muon 0.05": dict(optimizer="muon", muon_lr=0.05),
    "Muon 0.02, Adam 6e-3": dict(optimizer="muon", muon_lr=0.02, lr=6e-3),
    "Muon 0.05, Adam 6e-3": dict(optimizer="muon", muon_lr=0.05, lr=6e-3),
    "Muon 0.03, Adam 6e-3, warm-up 30": dict(optimizer="muon", muon_lr=0.03, lr=6e-3, warmup=30),
    "warm-up 30": dict(warmup=30),
    "QK-norm": dict(qk_norm=True),
    "Muon 0.03, Adam 6e-3, warm-up 30, QK-norm": dict(optimizer="muon", muon_lr=0.03, lr=6e-3, warmup=30,
                                                      qk_norm=True),
    "Muon 0.03, Adam 6e-3, warm-up 30, tied": dict(optimizer="muon", muon_lr=0.03, lr=6e-3, warmup=30, tie=True),
}
BASE_STEPS = 1100


def build(r: dict, vocab: int) -> GPT:
    return GPT(GPTConfig(vocab, r["block"], r["d_model"], r["heads"], r["layers"], d_ff=r["d_ff"],
                         attention="fused", tie_weights=r["tie"], qk_norm=r["qk_norm"]))


def heldout_fn(heldout_data, block):
    x, y = windows(heldout_data, 200, block, torch.Generator().manual_seed(1))

    @torch.no_grad()
    def heldout_loss(m) -> float:
        return sum(m.loss(x[i:i + 50], y[i:i + 50]).item() for i in range(0, 200, 50)) / 4
    return heldout_loss


def run(name: str, steps: int, train_data, heldout_data, vocab: int, seed: int) -> dict:
    r = {**RECIPE, **LEVERS[name]}
    set_seed(seed)
    model = build(r, vocab)

    def batches():
        g = torch.Generator().manual_seed(seed)
        while True:
            yield windows(train_data, r["batch"], r["block"], g)

    every = next(e for e in (100, 60, 50, 40, 20, 10, steps) if steps % e == 0)  # the last step is evaluated
    history = train(model, batches(), steps=steps, loss_fn=lambda m, b: m.loss(*b), lr=r["lr"],
                    warmup=min(r["warmup"], steps), log_every=10, eval_every=every,
                    eval_fn=heldout_fn(heldout_data, r["block"]), progress=False, seed=seed,
                    optimizer=r["optimizer"], muon_lr=r["muon_lr"], betas=(0.9, r["beta2"]),
                    min_lr_ratio=r["min_lr"])
    by_step = dict(zip(map(str, history.eval_step), history.eval_metric))
    return {"lever": name, "recipe": r, "steps": steps, "seed": seed, "heldout": by_step[str(steps)],
            "heldout_by_step": by_step, "seconds": round(history.seconds, 1)}


def make_step(r: dict, vocab: int, train_data, compiled: bool = False):
    """One training step of recipe ``r`` (forward, backward, clip, optimizer), as train() does it."""
    from attnbook.optim import Muon, muon_param_groups
    torch.manual_seed(0)
    model = build(r, vocab).train()
    if r["optimizer"] == "muon":
        hidden, rest = muon_param_groups(model)
        opts = [Muon(hidden, lr=1e-4), torch.optim.AdamW(rest, lr=1e-5)]
    else:
        opts = [torch.optim.Adam(model.parameters(), lr=1e-5)]
    forward = torch.compile(model) if compiled else model
    g = torch.Generator().manual_seed(0)

    def step() -> float:
        x, y = windows(train_data, r["batch"], r["block"], g)
        start = time.perf_counter()
        logits = forward(x)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for o in opts:
            o.step()
        return time.perf_counter() - start
    return step


def relative_speed(names: list[str], train_data, vocab: int, seconds: float, rounds: int = 3) -> dict:
    """Steps/s of each lever's step relative to the recipe's, the steps interleaved in one process."""
    names = ["recipe (Adam)"] + [n for n in names if n != "recipe (Adam)"]
    shapes = {}  # levers that differ only in learning rates or warm-up share a step
    for n in names:
        shapes.setdefault(step_kind(n), []).append(n)
    runs = [dict(names=ns, step=make_step({**RECIPE, **LEVERS[ns[0]]}, vocab, train_data), steps=0, s=0.0)
            for ns in shapes.values()]
    for run_ in runs:
        for _ in range(3):
            run_["step"]()
    for _ in range(rounds):
        start = time.perf_counter()
        while time.perf_counter() - start < seconds * len(runs):
            for run_ in runs:
                run_["s"] += run_["step"]()
                run_["steps"] += 1
    base = runs[0]["steps"] / runs[0]["s"]
    return {n: {"steps_per_s": round(run_["steps"] / run_["s"], 2),
                "relative": round(run_["steps"] / run_["s"] / base, 3)} for run_ in runs for n in run_["names"]}


COMPILE_CHILD = r"""
import json, sys, time, torch
sys.path.insert(0, {here!r}); sys.path.insert(0, {src!r})
torch.set_num_threads({threads})
from ch06_gpt_levers import RECIPE, LEVERS, make_step, load_text
train_data, _, vocab = load_text()
r = {{**RECIPE, **LEVERS[{name!r}]}}
eager, comp = make_step(r, vocab, train_data), make_step(r, vocab, train_data, compiled=True)
import resource
def cpu():  # this process and its finished children (gcc)
    return time.process_time() + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
t0, c0 = time.perf_counter(), cpu()
first = [comp() for _ in range(2)]
compile_s, compile_cpu_s = time.perf_counter() - t0, cpu() - c0
for _ in range(3): eager(); comp()
te = tc = 0.0
for _ in range({steps}): te += eager(); tc += comp()
print(json.dumps(dict(compile_s=round(compile_s, 1), compile_cpu_s=round(compile_cpu_s, 1),
                      first_two_steps_s=[round(x, 2) for x in first],
                      eager_steps_per_s=round({steps} / te, 2), compiled_steps_per_s=round({steps} / tc, 2),
                      relative=round(te / tc, 3))))
"""


def compile_speed(name: str, threads: int, steps: int) -> dict:
    """torch.compile in a fresh process with an empty inductor cache: compile seconds, steps/s vs eager."""
    code = COMPILE_CHILD.format(here=str(HERE), src=str(HERE.parent / "src"), threads=threads, name=name,
                                steps=steps)
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "TRITON_CACHE_DIR": cache,
               "TORCHINDUCTOR_COMPILE_THREADS": "1"}  # compiled in this process: its CPU time counts it all
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"rc {out.returncode}"}
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "threads": threads, "lever": name}


def markdown(result: dict) -> str:
    speed = result.get("speed", {})
    lines = [f"# Chapter 6: levers for the GPT at a minute of CPU ({result.get('date', '')})", "",
             f"Regenerate with `{COMMAND}` (see its docstring). Held-out nats per character over 200 windows "
             "of 64 characters, after a fixed number of steps (independent of the machine). Relative "
             "steps/s: each lever's training step timed against the recipe's, interleaved in one process "
             "on 1 thread (the shared machine was busy, so only the ratio means something). A lever's "
             f"budget is {BASE_STEPS:,} steps x its relative speed; it counts if seeds 0, 1 and 2 all "
             "reach at most 1.30 there.", "",
             "| lever | relative steps/s | budget (steps) | steps run | held-out per seed | by step (seed 0) |",
             "|---|---|---|---|---|---|"]
    groups: dict = {}
    for row in result.get("runs", {}).values():
        groups.setdefault((row["lever"], row["steps"]), []).append(row)
    for (name, steps), rows in sorted(groups.items(), key=lambda kv: (kv[0][0] != "recipe (Adam)", kv[0])):
        rows.sort(key=lambda row: row["seed"])
        rel = speed.get(name, {}).get("relative")
        budget = "" if rel is None else f"{BASE_STEPS * rel:,.0f}"
        seeds = ", ".join(f"{row['heldout']:.3f} (seed {row['seed']})" for row in rows)
        by_step = ", ".join(f"{s}: {v:.3f}" for s, v in rows[0]["heldout_by_step"].items() if int(s) % 200 == 0
                            or int(s) == steps)
        lines.append(f"| {name} | {'' if rel is None else f'{rel:.2f}'} | {budget} | {steps} | {seeds} | "
                     f"{by_step} |")
    if result.get("compile"):
        lines += ["", "## torch.compile (inductor, fresh cache, CPU)", "",
                  "| lever | threads | compile + first 2 steps, wall (s) | same, CPU (s) | eager steps/s | "
                  "compiled steps/s | compiled / eager |", "|---|---|---|---|---|---|---|"]
        for row in result["compile"]:
            if "error" in row:
                lines.append(f"| {row.get('lever', '')} | {row.get('threads', '')} | failed: {row['error']} "
                             "| | | | |")
                continue
            lines.append(f"| {row['lever']} | {row['threads']} | {row['compile_s']} | {row['compile_cpu_s']} | "
                         f"{row['eager_steps_per_s']} | "
                         f"{row['compiled_steps_per_s']} | {row['relative']:.2f} |")
    lines += [""] + [f"* {note}" for note in result.get("notes", [])]
    return "\n".join(lines) + "\n"


def step_kind(name: str) -> tuple:
    """What sets a lever's time per step (levers differing only in learning rates or warm-up share it)."""
    r = {**RECIPE, **LEVERS[name]}
    return r["optimizer"], r["tie"], r["qk_norm"]


def fill_speed(result: dict) -> None:
    """Give every lever the relative speed measured for a lever with the same kind of step."""
    speed = result.get("speed", {})
    for name in LEVERS:
        same = next((n for n in list(speed) if n in LEVERS and step_kind(n) == step_kind(name)
                     and "same step as" not in speed[n]), None)
        if name not in speed and same is not None:
            speed[name] = {**speed[same], "same step as": same}


def save(update) -> dict:
    """Merge into the JSON on disk, under a lock (several processes may share it)."""
    with open(Path(tempfile.gettempdir()) / "ch06_gpt_levers.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = json.loads(OUT.read_text()) if OUT.exists() else {"runs": {}}
        update(result)
        fill_speed(result)
        result.update(command=COMMAND, torch=torch.__version__, date=dt.date.today().isoformat())
        OUT.write_text(json.dumps(result, indent=1) + "\n")
        OUT.with_suffix(".md").write_text(markdown(result))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", action="store_true", help="train every lever (or --only) for --steps")
    parser.add_argument("--only", nargs="+", default=None, help="lever names")
    parser.add_argument("--steps", type=int, default=BASE_STEPS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--speed", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.only or list(LEVERS)
    if args.markdown:
        save(lambda result: None)
        return 0
    data = load_text()
    if args.speed:
        speed = relative_speed(names, data[0], data[2], args.speed, args.rounds)
        load = round(os.getloadavg()[0], 1)
        for name, row in speed.items():
            row["load"] = load
            print(f"{name}: {row}", flush=True)
        key = "speed" if args.threads == 1 else f"speed_{args.threads}_threads"  # the budget uses 1 thread's
        save(lambda result: result.setdefault(key, {}).update(speed))
    if args.compile:
        for name in names:
            row = compile_speed(name, args.threads, steps=40)
            print(row, flush=True)
            save(lambda result: result.setdefault("compile", []).append(row))
    if args.runs:
        for name in names:
            for seed in args.seeds:
                key = f"{name}; {args.steps} steps; seed {seed}"
                done = json.loads(OUT.read_text())["runs"] if OUT.exists() else {}
                if key in done:
                    continue
                row = run(name, args.steps, *data, seed=seed)
                print(f"{key}: {row['heldout']:.3f} ({row['seconds']} s) {row['heldout_by_step']}", flush=True)
                save(lambda result: result["runs"].update({key: row}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
