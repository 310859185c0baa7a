"""Chapter 9's tables, re-measured on this machine: time and peak memory of attention variants.

    python benchmarks/efficient_attention.py            # CPU or GPU, whatever is here
    python benchmarks/efficient_attention.py --quick    # small sizes, a few seconds
    python benchmarks/efficient_attention.py --max-length 16384 --heads 8

Writes benchmarks/efficient_attention.json and benchmarks/efficient_attention.md (device,
PyTorch version, date, and one table per experiment). A benchmark, not a test: the
numbers depend on the machine and on what else runs on it. Times are medians of
--repeats runs after a warm-up; peak memory is torch.cuda.max_memory_allocated on a GPU
and, on a CPU, the peak of the tensors PyTorch allocates (attnbook.cost.peak_memory).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from attnbook.cost import fit_power_law, measure_time, peak_memory  # noqa: E402
from attnbook.device import describe, pick_device  # noqa: E402
from attnbook.flash import flash_attention  # noqa: E402
from attnbook.linear_attention import linear_attention  # noqa: E402
from attnbook.multihead import MultiHeadAttention, kv_cache_bytes_per_token  # noqa: E402
from attnbook.sparse import sliding_window_attention  # noqa: E402

MiB = 2**20


def naive_attention(q, k, v, causal=False):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, L, S)
    if causal:
        L, S = scores.shape[-2:]
        scores = scores.masked_fill(~torch.ones(L, S, dtype=torch.bool, device=q.device).tril(), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def qkv(length, heads, d, device, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(1, heads, length, d, generator=g).to(device=device, dtype=dtype) for _ in range(3))


def measure(call, device, repeats):
    try:
        _, peak = peak_memory(call, device=device)
        return {"ms": 1e3 * measure_time(call, repeats=repeats, device=device), "peak MiB": peak / MiB}
    except (RuntimeError, MemoryError) as err:  # a backend that does not run here, or out of memory
        if device.type == "cuda":
            torch.cuda.empty_cache()
        message = str(err).splitlines()[0]
        return {"error": "not available here" if "No viable backend" in message or "No available kernel" in message
                else message[:80]}


def exact_attention_table(lengths, heads, d, device, dtype, repeats, block, causal):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def sdpa(backend=None):
        def call():
            if backend is None:
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return call

    rows = []
    for T in lengths:
        q, k, v = qkv(T, heads, d, device, dtype)
        methods = {"naive": lambda: naive_attention(q, k, v, causal),
                   f"attnbook.flash (block {block})": lambda: flash_attention(q, k, v, is_causal=causal,
                                                                              block_q=block, block_k=block),
                   "sdpa (default)": sdpa()}
        for name in ["MATH", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION"]:
            methods[f"sdpa {name}"] = sdpa(getattr(SDPBackend, name))
        for name, call in methods.items():
            rows.append({"tokens": T, "method": name, **measure(call, device, repeats)})
        print(f"  exact attention, {T} tokens: done", flush=True)
    return rows


def cheap_attention_table(lengths, heads, d, device, dtype, repeats, window, quadratic_up_to):
    rows = []
    for T in lengths:
        q, k, v = qkv(T, heads, d, device, dtype, seed=1)
        methods = {f"sliding window {window} + 1 global (banded)":
                   lambda: sliding_window_attention(q, k, v, window, num_global=1),
                   "linear attention (elu+1)": lambda: linear_attention(q, k, v),
                   "linear attention, causal (chunks of 64)": lambda: linear_attention(q, k, v, causal=True)}
        if T <= quadratic_up_to:
            methods["naive (for comparison)"] = lambda: naive_attention(q, k, v)
        for name, call in methods.items():
            rows.append({"tokens": T, "method": name, **measure(call, device, repeats)})
        print(f"  sparse/linear attention, {T} tokens: done", flush=True)
    return rows


def kv_cache_table(context):
    rows = []
    for name, kv_heads in [("MHA", 32), ("GQA-8", 8), ("MQA", 1)]:
        with torch.device("meta"):  # shapes only, no weights allocated
            layer = MultiHeadAttention(d_model=4096, num_heads=32, num_kv_heads=kv_heads, bias=False)
        per_token = kv_cache_bytes_per_token(layer, num_layers=32, dtype=torch.float16)
        rows.append({"attention": name, "KiB per token": per_token / 1024,
                     f"GiB for {context:,} tokens": per_token * context / 2**30})
    return rows


def exponents(rows, key="ms"):
    by_method = {}
    for r in rows:
        if key in r:
            by_method.setdefault(r["method"], []).append((r["tokens"], r[key]))
    return {m: round(fit_power_law(*zip(*pts))[0], 2) for m, pts in by_method.items() if len(pts) >= 3}


def markdown_table(rows, columns):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = []
        for c in columns:
            x = r.get(c, "")
            cells.append(f"{x:,.2f}" if isinstance(x, float) else str(x))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and 1 repeat (a smoke run)")
    parser.add_argument("--max-length", type=int, default=None, help="longest sequence (default 4096 CPU, 16384 GPU)")
    parser.add_argument("--heads", type=int, default=None, help="heads (default 1 on a CPU, 16 on a GPU)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--block", type=int, default=128, help="block size of attnbook.flash")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's choice)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "efficient_attention")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(verbose=False)
    gpu = device.type == "cuda"
    dtype = torch.float16 if gpu else torch.float32
    heads = args.heads or (16 if gpu else 1)
    max_length = 512 if args.quick else (args.max_length or (16384 if gpu else 4096))
    repeats = 1 if args.quick else args.repeats
    lengths = [n for n in (256, 512, 1024, 2048, 4096, 8192, 16384, 32768) if n <= max_length]
    print(f"device: {describe(device)}, {heads} head(s) of width 64, {dtype}, lengths {lengths}", flush=True)

    exact = exact_attention_table(lengths, heads, 64, device, dtype, repeats, args.block, causal=False)
    exact_causal = exact_attention_table(lengths[-2:], heads, 64, device, dtype, repeats, args.block, causal=True)
    cheap_lengths = sorted(set(lengths[1:] + [2 * max_length]))
    cheap = cheap_attention_table(cheap_lengths, heads, 64, device, dtype, repeats, window=64,
                                  quadratic_up_to=max_length)
    kv = kv_cache_table(100_000)
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "device": describe(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "heads": heads, "head_dim": 64, "dtype": str(dtype), "repeats": repeats,
        "exact_attention": exact, "exact_attention_causal": exact_causal, "sparse_and_linear": cheap,
        "time_exponents": {**exponents(exact), **exponents(cheap)},
        "memory_exponents": {**exponents(exact, "peak MiB"), **exponents(cheap, "peak MiB")},
        "kv_cache_7b": kv,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    md = [f"# Efficient attention: measurements (chapter 9)\n",
          f"Measured {result['date']} on **{result['device']}**, PyTorch {result['torch']}, Python "
          f"{result['python']}; {heads} head(s) of width 64, {dtype}, one sequence; time = median of {repeats} runs "
          f"after a warm-up. Re-run: `python benchmarks/efficient_attention.py`.\n",
          "## Exact attention (not causal)\n", markdown_table(exact, ["tokens", "method", "ms", "peak MiB", "error"]),
          "\n## Exact attention, causal\n",
          markdown_table(exact_causal, ["tokens", "method", "ms", "peak MiB", "error"]),
          "\n## Sliding window and linear attention\n",
          markdown_table(cheap, ["tokens", "method", "ms", "peak MiB", "error"]),
          "\n## Fitted exponents (time ~ tokens^p)\n",
          markdown_table([{"method": m, "time exponent": p, "memory exponent": result["memory_exponents"].get(m, "")}
                          for m, p in result["time_exponents"].items()], ["method", "time exponent",
                                                                            "memory exponent"]),
          "\n## KV cache of a 7B-class model (d = 4096, 32 heads of 128, 32 layers, float16)\n",
          markdown_table(kv, list(kv[0].keys())), ""]
    args.out.with_suffix(".md").write_text("\n".join(md), encoding="utf-8")
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
