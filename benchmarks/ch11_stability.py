"""Chapter 11's learning-rate sweep: plain attention, QK-norm and soft-capping, the chapter's tiny GPT.

    python benchmarks/ch11_stability.py            # writes benchmarks/ch11_stability.json and .md

For every learning rate and variant: the chapter's GPT (d_model 64, 4 heads, 2 layers,
context 64, pydoc_data.topics text) with chapter 6's learned positions, ``STEPS`` Adam steps of ``BATCH`` windows, the same
warm-up, cosine schedule and gradient clip as the chapter; recorded: the final training
loss (mean of the last tenth), the held-out loss, the largest attention logit seen during
training (measured every 25 steps on a fixed batch, before any cap), and whether the run
failed: its held-out loss not finite or above the bigram counts' (it learned less than
counting pairs of characters does; with the gradient clipped nothing becomes NaN at these
rates, but the loss stalls). The chapter trains one point of this sweep itself and checks
it against these numbers. A benchmark, not a test.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ch06_gpt_recipe import load_text as text_data  # noqa: E402  the chapters' one text split

from attnbook.gpt import GPT, GPTConfig  # noqa: E402
from attnbook.stability import diverged, max_attention_logit  # noqa: E402
from attnbook.training import set_seed, train  # noqa: E402

LRS = [3e-3, 1e-2, 3e-2, 1e-1]
VARIANTS = {"plain": {}, "QK-norm": {"qk_norm": True}, "soft-cap 5": {"softcap": 5.0}}
BLOCK, BATCH, STEPS, WARMUP = 64, 16, 300, 30


def windows(source, n, generator, block=BLOCK):
    starts = torch.randint(0, len(source) - block - 1, (n,), generator=generator)
    index = starts[:, None] + torch.arange(block)
    return source[index], source[index + 1]


def bigram_loss(train_data, x, y, V) -> float:
    """Held-out nats per character of add-0.1 bigram counts (chapter 6's baseline) on windows x -> y."""
    pairs = torch.zeros(V, V).index_put_((train_data[:-1], train_data[1:]), torch.ones(len(train_data) - 1),
                                         accumulate=True) + 0.1
    return float(-(pairs / pairs.sum(1, keepdim=True)).log()[x, y].mean())


def main() -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train_data, heldout_data, V = text_data()
    hx, hy = windows(heldout_data, 200, torch.Generator().manual_seed(1))
    limit = bigram_loss(train_data, hx, hy, V)
    hx, hy = hx.to(device), hy.to(device)
    probe = hx[:16]

    def batches(seed):
        g = torch.Generator().manual_seed(seed)
        while True:
            yield windows(train_data, BATCH, g)

    rows = []
    for name, options in VARIANTS.items():
        for lr in LRS:
            set_seed(0)
            model = GPT(GPTConfig(V, BLOCK, d_model=64, num_heads=4, num_layers=2, attention="fused",
                                  **options)).to(device)
            history = train(model, batches(0), steps=STEPS, lr=lr, warmup=WARMUP, log_every=25, progress=False,
                            loss_fn=lambda m, b: m.loss(*b), eval_every=25,
                            eval_fn={"logit": lambda m: max_attention_logit(m, probe)}, device=device)
            with torch.no_grad():
                heldout = float(model.loss(hx, hy))
            final = history.final_loss
            row = {"variant": name, "lr": lr, "final_loss": final, "heldout": heldout,
                   "max_logit": max(history.evals["logit"]), "failed": diverged(heldout, limit=limit),
                   "seconds": round(history.seconds, 1)}
            rows.append(row)
            print(row, flush=True)
    write(rows, limit, device)


def write(rows: list[dict], limit: float, device) -> None:
    best = {name: max([r["lr"] for r in rows if r["variant"] == name and not r["failed"]], default=None)
            for name in VARIANTS}
    result = {"command": "python benchmarks/ch11_stability.py", "device": str(device),
              "torch": torch.__version__, "python": platform.python_version(),
              "date": dt.date.today().isoformat(), "steps": STEPS, "batch": BATCH, "block": BLOCK,
              "bigram_nats": limit, "largest_lr_that_trains": best, "runs": rows}
    out = ROOT / "benchmarks" / "ch11_stability.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# Chapter 11: learning-rate sweep, plain attention vs QK-norm vs soft-capping", "",
             f"`{result['command']}` on {device}, torch {torch.__version__}, {result['date']}; {STEPS} steps of "
             f"{BATCH} windows of {BLOCK} characters; failed = held-out loss above the bigram "
             f"counts' {limit:.2f} nats or not finite.", "",
             "| variant | lr | final train loss | held-out | largest attention logit | failed |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        fin = r["final_loss"]
        lines.append(f"| {r['variant']} | {r['lr']:g} | {fin:.3f} | {r['heldout']:.3f} | {r['max_logit']:.1f} | "
                     f"{'yes' if r['failed'] else 'no'} |" if math.isfinite(fin) else
                     f"| {r['variant']} | {r['lr']:g} | nan | nan | {r['max_logit']:.1f} | yes |")
    lines += ["", "Largest learning rate that still beats the bigram counts: " +
              ", ".join(f"{k}: {v:g}" if v else f"{k}: none" for k, v in best.items()), ""]
    out.with_suffix(".md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
