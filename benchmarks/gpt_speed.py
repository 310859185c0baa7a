"""Training speed of the package GPT (scratch and fused attention) against a plain nanoGPT-style model.

Three models of the same shape (4 layers, 4 heads, d_model 128, context 64, batch 12,
character vocabulary of Python's ``pydoc_data.topics`` text, AdamW lr 1e-3, no dropout)
train in one process, interleaved: in each round of ``3 x --seconds`` the models take
turns step by step, each step timed on its own, so a busy machine slows all three
alike and the ratios stay meaningful. Reports steps/s, tokens/s and the held-out loss (mean over 200 random
windows of the last 10 % of the text) to ``benchmarks/gpt_speed.json`` and ``.md``.

    python benchmarks/gpt_speed.py                      # 3 rounds of 5 s, 2 threads
    python benchmarks/gpt_speed.py --rounds 5 --seconds 20 --optimizer adamw-fused

The package GPT keeps separate ``w_q``, ``w_k``, ``w_v`` projections (the chapters
read them), so it has 16 more parameter tensors than nanoGPT's packed ``c_attn``; its
fused path multiplies by the three side by side, so the matrix products are the same,
but AdamW's default per-tensor loop costs a little more per step
(``--optimizer adamw-fused`` removes that difference).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from attnbook.gpt import GPT, GPTConfig  # noqa: E402

HERE = Path(__file__).resolve().parent
LAYERS, HEADS, WIDTH, BLOCK, BATCH, LR = 4, 4, 128, 64, 12, 1e-3


class PlainBlock(nn.Module):
    """nanoGPT's block: one fused q/k/v projection, PyTorch's attention kernel, nn.LayerNorm."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.c_fc, self.mlp_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(D, dim=2)
        q, k, v = (t.view(B, T, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, D))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class PlainGPT(nn.Module):
    def __init__(self, vocab: int):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, WIDTH), nn.Embedding(BLOCK, WIDTH)
        self.h = nn.ModuleList(PlainBlock(WIDTH, HEADS) for _ in range(LAYERS))
        self.ln_f = nn.LayerNorm(WIDTH)
        self.lm_head = nn.Linear(WIDTH, vocab, bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)

    def loss(self, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1], device=ids.device))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def load_text() -> tuple[torch.Tensor, torch.Tensor, int]:
    from pydoc_data.topics import topics

    text = "".join(topics[k] for k in sorted(topics))
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text], dtype=torch.long)
    cut = int(0.9 * len(data))
    return data[:cut], data[cut:], len(chars)


def windows(data: torch.Tensor, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    starts = torch.randint(0, len(data) - BLOCK - 1, (count,), generator=generator)
    chunk = data.unfold(0, BLOCK + 1, 1)[starts]  # (count, BLOCK + 1)
    return chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()


@torch.no_grad()
def heldout_loss(model: nn.Module, data: torch.Tensor, count: int = 200) -> float:
    model.eval()
    x, y = windows(data, count, torch.Generator().manual_seed(1))
    total = sum(float(model.loss(x[i:i + 50], y[i:i + 50])) * len(x[i:i + 50]) for i in range(0, count, 50))
    model.train()
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="training time per model per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--optimizer", choices=["adamw", "adamw-fused"], default="adamw",
                        help="torch.optim.AdamW's default loop over the tensors, or its fused kernel")
    parser.add_argument("--out", type=Path, default=HERE / "gpt_speed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, held, vocab = load_text()
    makers = {
        "attnbook GPT, scratch attention": lambda: GPT(GPTConfig(vocab, BLOCK, WIDTH, HEADS, LAYERS,
                                                                  attention="scratch")),
        "attnbook GPT, fused attention": lambda: GPT(GPTConfig(vocab, BLOCK, WIDTH, HEADS, LAYERS, attention="fused")),
        "plain nanoGPT-style": lambda: PlainGPT(vocab),
    }
    runs = {}
    for name, make in makers.items():
        torch.manual_seed(0)
        model = make().train()
        opt = torch.optim.AdamW(model.parameters(), lr=LR, fused=True if args.optimizer == "adamw-fused" else None)
        runs[name] = dict(model=model, opt=opt,
                          gen=torch.Generator().manual_seed(0), steps=0, seconds=0.0,
                          params=sum(p.numel() for p in model.parameters()))
    for r in runs.values():  # warm-up (allocator, kernel choice), not timed
        for _ in range(3):
            x, y = windows(train, BATCH, torch.Generator().manual_seed(99))
            r["model"].loss(x, y).backward()
            r["opt"].zero_grad(set_to_none=True)
    per_round = {name: [] for name in runs}
    for _ in range(args.rounds):  # within a round the models take turns step by step: load hits all alike
        counts = {name: [0, 0.0] for name in runs}
        round_start = time.perf_counter()
        while time.perf_counter() - round_start < args.seconds * len(runs):
            for name, r in runs.items():
                model, opt = r["model"], r["opt"]
                start = time.perf_counter()
                x, y = windows(train, BATCH, r["gen"])
                loss = model.loss(x, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                counts[name][0] += 1
                counts[name][1] += time.perf_counter() - start
        for name, (steps, elapsed) in counts.items():
            runs[name]["steps"] += steps
            runs[name]["seconds"] += elapsed
            per_round[name].append(steps / elapsed)
    plain = runs["plain nanoGPT-style"]["steps"] / runs["plain nanoGPT-style"]["seconds"]
    results = []
    for name, r in runs.items():
        rate = r["steps"] / r["seconds"]
        results.append(dict(model=name, parameters=r["params"], steps=r["steps"], seconds=round(r["seconds"], 2),
                            steps_per_s=round(rate, 2), tokens_per_s=round(rate * BATCH * BLOCK),
                            relative_to_plain=round(rate / plain, 3),
                            steps_per_s_by_round=[round(v, 2) for v in per_round[name]],
                            heldout_loss=round(heldout_loss(r["model"], held), 4)))
    info = dict(layers=LAYERS, heads=HEADS, d_model=WIDTH, block=BLOCK, batch=BATCH, vocab=vocab, lr=LR,
                threads=args.threads, rounds=args.rounds, optimizer=args.optimizer, seconds_per_round=args.seconds,
                torch=torch.__version__, load_average_1min=round(os.getloadavg()[0], 2),
                machine=platform.processor() or platform.machine(), python=platform.python_version())
    args.out.with_suffix(".json").write_text(json.dumps(dict(setup=info, results=results), indent=2) + "\n")
    lines = ["# GPT training speed: attnbook (scratch, fused) vs a plain nanoGPT-style model", "",
             f"{LAYERS} layers, {HEADS} heads, d_model {WIDTH}, context {BLOCK}, batch {BATCH}, {vocab} characters "
             f"(pydoc_data.topics), {args.optimizer} lr {LR}, no dropout, {args.threads} threads; "
             f"{args.rounds} rounds of "
             f"about {args.seconds:g} s per model, the models taking turns step by step "
             f"(torch {torch.__version__}; 1-minute load average {os.getloadavg()[0]:.1f} "
             f"on {os.cpu_count()} cores at the end).", "",
             "| model | parameters | steps/s | tokens/s | vs plain | held-out loss (nats/char) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['parameters']:,} | {r['steps_per_s']:.1f} | {r['tokens_per_s']:,} | "
                     f"{r['relative_to_plain']:.2f} | {r['heldout_loss']:.3f} |")
    lines += ["", "The models take turns, so each trains for about the same number of steps; held-out loss: "
              "mean over 200 random windows of the last 10 % of the text. steps/s by round: "
              + "; ".join(f"{r['model']}: {r['steps_per_s_by_round']}" for r in results)]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
