"""Run chapters with several seeds and record every threshold check's value: the margin rule's data.

    python benchmarks/seed_runs.py notebooks/06_transformer.ipynb            # seeds 0 1 2
    python benchmarks/seed_runs.py notebooks/0[1-3]*.ipynb --seeds 0 1 2 3

Each run executes the notebook in a fresh kernel with ``ATTNBOOK_SEED=k`` (added to
every ``attnbook.training.set_seed`` call) and ``ATTNBOOK_CHECKS=record`` (a failing
``at_least``/``at_most`` is recorded, not raised, so one run gives every figure). The
values go to benchmarks/seeds/<notebook>.json (one entry per device, replaced when
re-run) and benchmarks/seeds/<notebook>.md: for each check its value per seed, the target in the
notebook and the target the margin rule gives (:func:`attnbook.course.check.margin_target`);
``loose``/``TIGHT`` flag targets outside the rule's range. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from run_notebooks import run_notebook  # noqa: E402  (one way to execute a chapter)

from attnbook.course.check import margin_target  # noqa: E402

SEEDS = ROOT / "benchmarks" / "seeds"


def record(path: Path, seeds: list[int], timeout: int) -> dict:
    runs = []
    for seed in seeds:
        os.environ.update(ATTNBOOK_SEED=str(seed), ATTNBOOK_CHECKS="record")
        try:
            result = run_notebook(path, timeout)
        finally:
            os.environ.pop("ATTNBOOK_SEED"), os.environ.pop("ATTNBOOK_CHECKS")
        print(f"{path.name} seed {seed}: {result['seconds']} s, {'ok' if result['ok'] else result['error']}",
              flush=True)
        runs.append({"seed": seed, **result})
    checks: dict[str, dict] = {}
    for run in runs:
        for c in run["results"]:
            if c["kind"] in ("at_least", "at_most"):
                entry = checks.setdefault(c["name"], {"kind": c["kind"], "target": c["target"], "values": {}})
                entry["values"][str(run["seed"])] = c["value"]
    for entry in checks.values():
        values = list(entry["values"].values())
        entry["rule"] = margin_target(values, entry["kind"]) if len(values) >= 3 else None
    device = next((r["device"] for r in runs if r["device"] != "unknown"), "unknown")
    return {"device": device, "seeds": seeds, "seconds": [r["seconds"] for r in runs],
            "errors": [r["error"] for r in runs if r["error"]], "checks": checks,
            "date": dt.date.today().isoformat()}


def verdict(entry: dict) -> str:
    """'ok' when the target lies between the worst seed and the rule's target, else which way it is off."""
    rule, values = entry["rule"], list(entry["values"].values())
    if rule is None:
        return "fewer than 3 seeds"
    worst = min(values) if entry["kind"] == "at_least" else max(values)
    low, high = sorted((rule, worst))
    slack = 1e-9 + 0.5 * (high - low)  # half a margin either side still counts as following the rule
    if entry["kind"] == "at_least":
        return "TIGHT" if entry["target"] > worst else "loose" if entry["target"] < rule - slack else "ok"
    return "TIGHT" if entry["target"] < worst else "loose" if entry["target"] > rule + slack else "ok"


def render(data: dict) -> str:
    lines = ["# Thresholds from recorded seeds", "",
             "Regenerate with `python benchmarks/seed_runs.py notebooks/NN_x.ipynb`; the margin rule is in "
             "`attnbook.course.check`'s docstring. `TIGHT`: a recorded seed fails the target; `loose`: the "
             "target is further from the seeds than the rule's.", ""]
    for key in sorted(data):
        run = data[key]
        lines += [f"## {key}", "", f"Seeds {run['seeds']}, {run['date']}, seconds {run['seconds']}"
                  + (f"; errors: {run['errors']}" if run["errors"] else ""), "",
                  "| check | kind | values by seed | target | rule | |", "|---|---|---|---|---|---|"]
        for name, e in run["checks"].items():
            values = ", ".join(f"{v:.4g}" for v in e["values"].values())
            rule = "" if e["rule"] is None else f"{e['rule']:.4g}"
            lines.append(f"| {name} | {e['kind']} | {values} | {e['target']:.4g} | {rule} | {verdict(e)} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    SEEDS.mkdir(exist_ok=True)
    for path in args.notebooks:
        out = SEEDS / f"{path.stem}.json"
        data = json.loads(out.read_text()) if out.exists() else {}
        run = record(path.resolve(), args.seeds, args.timeout)
        data[f"{path.stem} ({run['device']})"] = run
        out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        out.with_suffix(".md").write_text(render(data))
        print(f"wrote {out.relative_to(ROOT)} and its .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
