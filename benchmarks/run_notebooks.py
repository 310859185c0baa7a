"""Execute every chapter notebook on whatever device is here; record time and results.

    python benchmarks/run_notebooks.py                 # all notebooks
    python benchmarks/run_notebooks.py notebooks/01_rnn_bottleneck.ipynb
    python benchmarks/run_notebooks.py --jobs 2      # as CI runs them: 2 at once, 1 thread each

Each notebook runs in a fresh kernel (nbclient), timed from kernel start to the last
cell. Its result checks (`attnbook.check`) append what they verified to a file named by
the environment variable ATTNBOOK_RESULTS; those are the notebook's headline results
(exercise checks are left out). With ``--jobs N``, N notebooks run at once, each kernel on
one thread (as ``make test`` runs them on N pytest-xdist workers), longest first. Results are merged into benchmarks/results.json, one
entry per device (so a CPU run and a GPU run sit side by side), and rendered as
benchmarks/results.md, which the book's status page includes. Exit status 1 if any
notebook failed. This is a benchmark, not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
RESULTS_JSON = ROOT / "benchmarks" / "results.json"
RESULTS_MD = ROOT / "benchmarks" / "results.md"


def run_notebook(path: Path, timeout: int, one_thread: bool = False) -> dict:
    if one_thread:  # the kernel inherits the environment
        os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        results_file = Path(tmp) / "results.jsonl"
        os.environ["ATTNBOOK_RESULTS"] = str(results_file)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        start = time.perf_counter()
        error = None
        try:
            client.execute()
        except CellExecutionError as exc:
            error = str(exc).strip().splitlines()[-1][:300]
        except Exception as exc:  # a dead kernel or a timeout: record it, go on with the next notebook
            error = f"{type(exc).__name__}: {exc}"[:300]
        seconds = time.perf_counter() - start
        checks = [json.loads(line) for line in results_file.read_text().splitlines()] if results_file.exists() else []
    device = next((o.get("text", "").strip().removeprefix("Running on ").splitlines()[0]
                   for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("text", "").startswith("Running on ")), "unknown")
    return {"seconds": round(seconds, 1), "device": device, "ok": error is None, "error": error,
            "results": [c for c in checks if not c["name"].startswith("Exercise")]}


def _fmt(check: dict) -> str:
    if check["kind"] in ("at_least", "at_most"):
        sign = "≥" if check["kind"] == "at_least" else "≤"
        return f"{check['name']}: **{check['value']:.4g}** ({sign} {check['target']:.4g})"
    return f"{check['name']}: passed"


def cpu_name() -> str:
    """The processor's model name and its widest vector unit (timings differ between CPUs)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields = {}  # the first processor's "key: value" lines
    for line in info.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name, flags = fields.get("model name", platform.machine()), fields.get("flags", "").split()
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else None
    return f"{name}, {os.cpu_count()} cores" + (f", {vector}" if vector else "")


def render(all_runs: dict) -> str:
    lines = ["# Benchmark results", "",
             "Written by `python benchmarks/run_notebooks.py`: each chapter executed from a fresh kernel, "
             "its wall time, and the results its own checks verified.", ""]
    for label, run in sorted(all_runs.items()):
        cpu = f" {run['cpu']}." if run.get("cpu") else ""
        lines += [f"## {label}", "", f"{run['date']}, Python {run['python']}, PyTorch {run['torch']}.{cpu}", "",
                  "| notebook | device | time (s) | status | results checked |", "|---|---|---|---|---|"]
        for name, nb in sorted(run["notebooks"].items()):
            status = "ok" if nb["ok"] else f"failed: {nb['error']}"
            results = "<br>".join(_fmt(c) for c in nb["results"]) or "none"
            lines.append(f"| `{name}` | {nb['device']} | {nb['seconds']} | {status} | {results} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--label", help="name of this machine in the results (default: from the device)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="notebooks run at once, each kernel on one thread (default 1: one at a time, "
                             "PyTorch's default threads)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    import torch

    if args.jobs == 1:
        runs = {p.name: run_notebook(p.resolve(), args.timeout) for p in paths}
    else:
        sys.path.insert(0, str(ROOT))
        from tools.schedule import DEFAULT_NOTEBOOK_SECONDS, recorded_notebook_seconds

        recorded = recorded_notebook_seconds()
        longest_first = sorted(paths, key=lambda p: -recorded.get(p.name, DEFAULT_NOTEBOOK_SECONDS))
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {p.name: pool.submit(run_notebook, p.resolve(), args.timeout, True) for p in longest_first}
            runs = {name: futures[name].result() for name in sorted(futures)}
        for nb in runs.values():
            nb["device"] += f", {args.jobs} notebooks at once"
    for name, nb in runs.items():
        print(f"{name}: {nb['seconds']} s on {nb['device']}, {'ok' if nb['ok'] else 'FAILED: ' + str(nb['error'])}")
        for check in nb["results"]:
            print("   ", _fmt(check).replace("**", ""))
    devices = {nb["device"] for nb in runs.values()}
    label = args.label or ("GPU: " if any(d.startswith("cuda") for d in devices) else "CPU: ") + ", ".join(sorted(devices))
    all_runs = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    previous = all_runs.get(label, {}).get("notebooks", {})
    all_runs[label] = {"date": dt.date.today().isoformat(), "python": platform.python_version(),
                       "torch": torch.__version__, "cpu": cpu_name(), "notebooks": {**previous, **runs}}
    RESULTS_JSON.write_text(json.dumps(all_runs, indent=1, sort_keys=True) + "\n")
    RESULTS_MD.write_text(render(all_runs))
    print(f"wrote {RESULTS_JSON.relative_to(ROOT)} and {RESULTS_MD.relative_to(ROOT)}")
    return 0 if all(nb["ok"] for nb in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
