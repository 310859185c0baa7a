"""Chapter 11's search for an attention sink: what it takes for the tiny GPT to park attention on token 0.

    python benchmarks/ch11_sinks.py                  # seeds 0 1; writes (or adds to) benchmarks/ch11_sinks.json and .md
    python benchmarks/ch11_sinks.py --seeds 0 1 2

Every run is the chapter's recipe (d_model 64, 4 heads, 2 layers, context 64, no position
embeddings, pydoc_data.topics text, Adam with warm-up 30, cosine decay and clip 1, 16
windows per step) with one lever changed, the levers known to make sinks form: a fixed
start token (BOS, StreamingLLM's "dedicated sink token") at the head of every training
window and every text read, longer training, more layers and heads, AdamW with weight
decay at a higher learning rate; and the same with the sigmoid output gate. Recorded per
run: the held-out loss, the first-token share of every layer and head (queries 8 to 63 of
64 held-out windows, :func:`attnbook.streaming.sink_share`) next to uniform attention's,
and the loss past the first window of 8 held-out texts of 512 characters read with 63
tokens of cache: window only, 1 first token + window, 4 first tokens + window, and
recompute. The chapter trains the first configuration itself and checks it against this
file. A benchmark, not a test.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from ch06_gpt_recipe import load_text as text_data  # noqa: E402  the chapters' one text split

from attnbook.gpt import GPT, GPTConfig  # noqa: E402
from attnbook.streaming import attention_maps, recompute_nll, sink_share, streaming_nll  # noqa: E402
from attnbook.training import set_seed, train  # noqa: E402

BLOCK, BATCH, WARMUP, LR = 64, 16, 30, 3e-3
CONFIGS = {  # name: (options of the run)
    "chapter recipe": {},
    "BOS": {"bos": True},
    "BOS, 600 steps": {"bos": True, "steps": 600},
    "BOS, 1500 steps, lr 6e-3": {"bos": True, "steps": 1500, "lr": 6e-3},
    "BOS, 4 layers x 8 heads": {"bos": True, "num_layers": 4, "num_heads": 8},
    "BOS, AdamW wd 0.1, lr 1e-2, 600 steps": {"bos": True, "steps": 600, "lr": 1e-2, "weight_decay": 0.1},
    "BOS + output gate": {"bos": True, "gate": True},
    "BOS + output gate, 1500 steps, lr 6e-3": {"bos": True, "gate": True, "steps": 1500, "lr": 6e-3},
}


def windows(source, n, generator, bos=None, block=BLOCK):
    """n random windows and their targets; with ``bos`` the window is BOS + block - 1 characters."""
    length = block if bos is None else block - 1
    starts = torch.randint(0, len(source) - length - 1, (n,), generator=generator)
    index = starts[:, None] + torch.arange(length)
    x, y = source[index], source[index + 1]
    if bos is not None:
        x = torch.cat([torch.full((n, 1), bos), x], dim=1)
        y = torch.cat([source[starts][:, None], y], dim=1)  # BOS predicts the first character
    return x, y


def run(name: str, options: dict, seed: int, data) -> dict:
    train_data, heldout_data, V = data
    opts = dict(options)
    bos = V if opts.pop("bos", False) else None
    steps, lr = opts.pop("steps", 300), opts.pop("lr", LR)
    weight_decay = opts.pop("weight_decay", 0.0)
    config = dict(vocab_size=V + (bos is not None), block_size=BLOCK, d_model=64, num_heads=4, num_layers=2,
                  attention="fused", position="none")
    set_seed(seed)  # as the chapter run with ATTNBOOK_SEED=seed: the seed moves the weights, not the data
    model = GPT(GPTConfig(**{**config, **opts}))
    g = torch.Generator().manual_seed(0)

    def batches():
        while True:
            yield windows(train_data, BATCH, g, bos)

    t = time.process_time()
    train(model, batches(), steps=steps, lr=lr, seed=seed, warmup=WARMUP, loss_fn=lambda m, b: m.loss(*b), log_every=25,
          progress=False, optimizer="adamw" if weight_decay else "adam", weight_decay=weight_decay)
    cpu = time.process_time() - t
    model.eval()
    hx, hy = windows(heldout_data, 200, torch.Generator().manual_seed(1), bos)
    with torch.no_grad():
        heldout = float(model.loss(hx, hy))
    share = sink_share(attention_maps(model, hx[:64]), skip=8)  # (layers, heads)
    texts = torch.stack([heldout_data[s:s + 8 * BLOCK] for s in range(0, 64 * BLOCK, 8 * BLOCK)])
    if bos is not None:
        texts = torch.cat([torch.full((8, 1), bos), texts[:, :-1]], dim=1)
    past = slice(BLOCK, None)
    stream = {"window only": streaming_nll(model, texts, window=63),
              "1 first + window": streaming_nll(model, texts, window=62, sinks=1),
              "4 first + window": streaming_nll(model, texts, window=59, sinks=4),
              "recompute": recompute_nll(model, texts, context=64)}
    row = {"config": name, "seed": seed, "steps": steps, "heldout": round(heldout, 4),
           "largest_share": round(float(share.max()), 4), "share": [[round(v, 4) for v in r] for r in share.tolist()],
           "stream": {k: round(float(v[:, past].mean()), 4) for k, v in stream.items()}, "cpu_seconds": round(cpu, 1)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), help="a subset of the configurations")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = text_data()
    rows = [run(name, CONFIGS[name], seed, data) for name in args.configs for seed in args.seeds]
    write(rows)


def write(rows: list[dict]) -> None:
    """Write the runs, keeping those of other seeds and configurations already in the JSON."""
    out = ROOT / "benchmarks" / "ch11_sinks.json"
    new = {(r["config"], r["seed"]) for r in rows}
    if out.exists():
        rows = [r for r in json.loads(out.read_text())["runs"] if (r["config"], r["seed"]) not in new] + rows
    order = list(CONFIGS)
    rows.sort(key=lambda r: (order.index(r["config"]) if r["config"] in order else len(order), r["seed"]))
    seeds = sorted({r["seed"] for r in rows})
    uniform = sum(1 / (i + 1) for i in range(8, BLOCK)) / (BLOCK - 8)
    result = {"command": "python benchmarks/ch11_sinks.py --seeds " + " ".join(map(str, seeds)),
              "device": "cpu", "torch": torch.__version__, "python": platform.python_version(),
              "date": dt.date.today().isoformat(), "uniform_share": round(uniform, 4), "runs": rows}
    out.write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# Chapter 11: does an attention sink form in the tiny GPT?", "",
             f"`{result['command']}` on cpu, torch {torch.__version__}, {result['date']}. Largest first-token "
             f"share of any head (queries 8-63; uniform attention gives {uniform:.3f}), held-out nats/char, and "
             "nats/char past the first window of 8 texts of 512 characters read with 63 tokens of cache.", "",
             "| configuration | seed | held-out | largest share | window only | 1 first + window | "
             "4 first + window | recompute |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["stream"]
        lines.append(f"| {r['config']} | {r['seed']} | {r['heldout']:.3f} | {r['largest_share']:.3f} | "
                     f"{s['window only']:.3f} | {s['1 first + window']:.3f} | {s['4 first + window']:.3f} | "
                     f"{s['recompute']:.3f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
