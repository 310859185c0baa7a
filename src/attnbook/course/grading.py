"""Grading a folder of submitted student notebooks, each as untrusted code.

Each submission runs in a worker process of its own (:mod:`attnbook.course.worker`),
whose kernel is sandboxed (:mod:`attnbook.course.sandbox`) in a temporary folder of
its own. Check cells are put back to the instructor's version (hidden tests
included) before a submission runs, and the checks themselves run in the worker,
outside the submission's kernel, so printing ``PASS`` or patching the checks earns
nothing. By default only what the exercises need runs: the chapter's set-up and
import cells, then the whole exercise section of the submission (``full=True`` runs
every cell, as the student did).

A submission folder holds either ``<student>.ipynb`` files or one folder per student
with that student's notebooks; each student notebook names its chapter in its
metadata (``attnbook.chapter``), written by :mod:`attnbook.course.student`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbook.course.markers import (EXERCISE_HEADING, EXERCISES_SECTION, IMPORTS_ATTNBOOK, METADATA_KEY, cells_of,
                                     find_exercises, nbformat, split_check)
from attnbook.course.worker import fingerprint, verify

__all__ = ["STATUSES", "ExerciseResult", "Submission", "Limits", "grade_submission", "grade_folder"]

STATUSES = ("pass", "fail", "not done", "error", "timeout", "not run", "missing")


@dataclass
class ExerciseResult:
    """The outcome of one graded item for one submission."""

    label: str
    status: str  # one of STATUSES
    points: float
    message: str = ""


@dataclass
class Submission:
    """One graded notebook: who, which chapter, the outcome of each exercise."""

    student: str
    path: str
    chapter: str
    status: str  # "graded", "malformed", "unknown chapter", "timeout", "crashed"
    seconds: float
    exercises: list[ExerciseResult] = field(default_factory=list)
    message: str = ""

    @property
    def points(self) -> float:
        return sum(e.points for e in self.exercises)


@dataclass
class Limits:
    """What each submission's kernel may use (see :mod:`attnbook.course.sandbox`).

    ``memory_gb`` caps its address space (0: no cap), ``file_mb`` any file it writes;
    its CPU seconds are capped at the notebook time limit times its threads, plus a
    minute. ``network=True`` leaves it the network, ``gpu=True`` the GPUs.
    """

    memory_gb: float = 4.0
    file_mb: float = 256.0
    network: bool = False
    gpu: bool = False

    def __post_init__(self) -> None:
        for name in ("memory_gb", "file_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"expected {name} to be a number >= 0, got {value!r}")


def _position(cells: list[Any], cell_id: str | None) -> int | None:
    if cell_id is None:
        return None
    return next((i for i, c in enumerate(cells) if c.get("id") == cell_id), None)


def _exercise_section(cells: list[Any], source: Any) -> list[Any]:
    """The instructor's set-up and import cells, then the submission's exercise section."""
    preamble = []
    for cell in source.cells:
        if cell.cell_type == "code":
            preamble.append(copy.deepcopy(cell))
            if IMPORTS_ATTNBOOK.search(cell.source):
                break
    start = next((i for i, c in enumerate(cells) if c.cell_type == "markdown" and EXERCISES_SECTION.search(c.source)),
                 None)
    if start is None:  # heading removed: start at the first exercise heading or graded cell
        start = next((i for i, c in enumerate(cells)
                      if (c.cell_type == "markdown" and EXERCISE_HEADING.search(c.source))
                      or c.get("metadata", {}).get(METADATA_KEY, {}).get("grade")), len(cells))
    return preamble + [c for c in cells[start:] if c.cell_type == "code"]


def graded_notebook(submission: Any, source: Any, full: bool = False) -> tuple[Any, list[str], list[str]]:
    """The notebook to run: the submission with the instructor's check cells.

    Returns it, the labels of exercises whose solution cell the submission no longer
    has, and every label.
    """
    nbf = nbformat()
    exercises = find_exercises(source)
    cells = [copy.deepcopy(c) for c in submission.cells]
    for cell in cells:  # a submission cannot mark a cell of its own as graded
        if isinstance(cell.get("metadata"), dict):
            cell["metadata"].pop(METADATA_KEY, None)
    missing: list[str] = []
    for exercise in exercises:
        original = source.cells[exercise.check_cell]
        index = _position(cells, original.get("id"))
        if index is None:  # the student deleted the check: put it after their solution cell
            anchors = [a for a in (_position(cells, source.cells[s].get("id")) for s in exercise.solution_cells)
                       if a is not None]
            if exercise.solution_cells and not anchors:
                missing.append(exercise.label)
                continue
            index = (max(anchors) + 1) if anchors else len(cells)
            cells.insert(index, nbf.v4.new_code_cell())
        graded_part, rest = split_check(original.source)
        cells[index] = nbf.v4.new_code_cell(graded_part, metadata={METADATA_KEY: {"grade": exercise.label}})
        if rest and full:  # what the cell does after its checks (a demo) runs, ungraded, after it
            cells.insert(index + 1, nbf.v4.new_code_cell(rest))
    if not full:
        cells = _exercise_section(cells, source)
    for cell in cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    graded = nbf.v4.new_notebook(cells=cells, metadata=copy.deepcopy(source.metadata))
    return graded, missing, [e.label for e in exercises]


def _chapter_of(nb: Any) -> str | None:
    meta = nb.metadata.get(METADATA_KEY, {})
    return meta.get("chapter") if isinstance(meta, dict) else None


def _chapter_from_name(stem: str, sources: dict[str, Any]) -> str | None:
    """The chapter a file name points to: the same stem, or the same two-digit number."""
    if stem in sources:
        return stem
    if len(sources) == 1:
        return next(iter(sources))
    match = re.match(r"(\d{2})", stem)
    numbered = [name for name in sources if match and name.startswith(match.group(1))]
    return numbered[0] if len(numbered) == 1 else None


def _sources(source_dir: str | Path) -> dict[str, Any]:
    """The instructor's notebooks, read once (a submission cannot change them mid-run)."""
    paths = sorted(Path(source_dir).glob("*.ipynb"))
    if not paths:
        raise ValueError(f"expected the instructor's chapter notebooks in {str(source_dir)!r}, found none")
    return {p.stem: nbformat().read(p, as_version=4) for p in paths}


def _copy_font_cache(target: Path) -> None:
    """Give the kernel Matplotlib's font list, so it does not rebuild it in its empty home."""
    cache = Path(os.environ.get("MPLCONFIGDIR") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                 / "matplotlib")
    for font_list in cache.glob("fontlist-*.json"):
        target.mkdir(parents=True, exist_ok=True)
        (target / font_list.name).write_bytes(font_list.read_bytes())


def _stop(worker: subprocess.Popen, pid_file: Path) -> None:
    """Stop a worker and its kernel (a child of the worker, in a session of its own)."""
    kernel = None
    try:
        pid = int(pid_file.read_text())
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:  # only a child of this worker
            if int(handle.read().rsplit(")", 1)[1].split()[1]) == worker.pid:
                kernel = pid
    except (OSError, ValueError, IndexError):
        pass
    for target in ([kernel] if kernel else []) + [worker.pid]:
        try:
            os.killpg(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    worker.wait(timeout=30)


def grade_submission(path: str | Path, sources: dict[str, Any], student: str, *, full: bool = False,
                     cell_timeout: float = 60, notebook_timeout: float = 300, chapter: str | None = None,
                     threads: int | None = None, limits: Limits | None = None,
                     package: dict[str, str] | None = None) -> Submission:
    """Grade one submitted notebook in a sandboxed worker; never raises for a bad submission.

    ``sources`` maps chapter names (file stems) to the instructor's notebooks (paths or
    notebooks). A submission that is not a readable notebook is "malformed"; one that
    runs past ``notebook_timeout`` seconds is stopped (its kernel too) and scored as
    far as it got; a cell past ``cell_timeout`` is interrupted and the rest still runs.
    ``package`` is the :func:`~attnbook.course.worker.fingerprint` taken when grading began.
    """
    path, limits = Path(path), limits or Limits()
    start = time.perf_counter()

    def result(status: str, message: str = "", exercises: list[ExerciseResult] | None = None,
               chapter_name: str = "") -> Submission:
        return Submission(student, str(path), chapter_name, status, round(time.perf_counter() - start, 2),
                          exercises or [], message)

    try:
        nb = nbformat().read(path, as_version=4)
        cells_of(nb)
    except Exception as error:  # noqa: BLE001 - any unreadable file is a malformed submission
        return result("malformed", f"not a readable notebook: {type(error).__name__}: {str(error)[:200]}")
    name = chapter or _chapter_of(nb) or _chapter_from_name(path.stem, sources)
    if name not in sources:
        return result("unknown chapter", f"expected metadata {METADATA_KEY}.chapter naming one of "
                      f"{sorted(sources)}, got {name!r}")
    source = sources[name]
    if not hasattr(source, "cells"):
        source = nbformat().read(source, as_version=4)
    graded, missing, labels = graded_notebook(nb, source, full)
    threads = threads or 1
    secret = secrets.token_hex(32)
    with tempfile.TemporaryDirectory(prefix="attnbook-grade-") as tmp:
        own, root = Path(tmp) / "grader", Path(tmp) / "work"  # the worker's folder; the kernel's folder
        own.mkdir(mode=0o700)
        root.mkdir(mode=0o700)
        nbformat().write(graded, own / "in.ipynb")
        _copy_font_cache(root / "home" / ".matplotlib")
        sandbox = ["--memory-gb", str(limits.memory_gb), "--file-mb", str(limits.file_mb),
                   "--cpu-seconds", str(int(notebook_timeout * threads + 60))]
        sandbox += ["--network"] if limits.network else []
        sandbox += ["--gpu"] if limits.gpu else []
        plan = {"notebook": str(own / "in.ipynb"), "result": str(own / "result.json"), "root": str(root),
                "pid_file": str(own / "kernel.pid"), "cell_timeout": cell_timeout, "sandbox": sandbox,
                "fingerprint": package or fingerprint(),
                "env": {k: os.environ.get(k, str(threads)) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
        (own / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
        worker = subprocess.Popen([sys.executable, "-m", "attnbook.course.worker", str(own / "plan.json")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True)
        status, message = "graded", ""
        try:
            log, _ = worker.communicate(f"{secret}\n", timeout=notebook_timeout)
        except subprocess.TimeoutExpired:
            status, message = "timeout", f"stopped after the time limit per notebook ({notebook_timeout:g} s)"
            _stop(worker, own / "kernel.pid")
            log = ""
        try:
            outcome = verify(json.loads((own / "result.json").read_text(encoding="utf-8")), secret)
        except (OSError, ValueError):
            outcome = None
    if outcome is None:
        outcome = {"exercises": {}, "done": False, "problem": ""}
        if status == "graded":
            status, message = "crashed", f"the grading run left no signed result: {log.strip()[-300:]}"
    elif outcome.get("problem"):
        status, message = ("crashed" if not outcome["exercises"] else status), outcome["problem"]
    elif status == "graded" and worker.returncode != 0:
        status, message = "crashed", f"the grading run failed: {log.strip()[-300:]}"
    results = []
    for label in labels:
        got = outcome["exercises"].get(label)
        if label in missing:
            results.append(ExerciseResult(label, "missing", 0.0, "the solution cell was deleted"))
        elif got is not None and got.get("status") in STATUSES:
            results.append(ExerciseResult(label, got["status"], float(got["status"] == "pass"), got.get("message", "")))
        elif status == "timeout":
            results.append(ExerciseResult(label, "timeout", 0.0, message))
        else:
            results.append(ExerciseResult(label, "not run", 0.0, outcome.get("problem") or message
                                          or "the notebook stopped before this check ran"))
    return result(status, message, results, name)


def _student_name(path: Path, root: Path) -> str:
    relative = path.relative_to(root)
    return relative.parts[0] if len(relative.parts) > 1 else path.stem


def grade_folder(folder: str | Path, source_dir: str | Path, *, jobs: int = 1, full: bool = False,
                 cell_timeout: float = 60, notebook_timeout: float = 300,
                 limits: Limits | None = None) -> list[Submission]:
    """Grade every ``.ipynb`` under ``folder`` (``<student>.ipynb`` or ``<student>/<any>.ipynb``).

    ``source_dir`` holds the instructor's chapter notebooks. Submissions run ``jobs``
    at a time; one bad submission never stops the others.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"expected a folder of submitted notebooks, got {str(folder)!r}")
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"expected jobs to be a positive int, got {jobs!r}")
    for name, value in (("cell_timeout", cell_timeout), ("notebook_timeout", notebook_timeout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"expected {name} to be a positive number of seconds, got {value!r}")
    if limits is not None and not isinstance(limits, Limits):
        raise TypeError(f"expected limits to be an attnbook.course.grading.Limits, got {type(limits).__name__}")
    sources = _sources(source_dir)
    paths = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not paths:
        raise ValueError(f"expected submitted .ipynb files in {str(folder)!r}, found none")
    threads = max(1, (os.cpu_count() or 1) // jobs)  # share the cores between the kernels that run at once
    package = fingerprint()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(grade_submission, p, sources, _student_name(p, folder), full=full,
                               cell_timeout=cell_timeout, notebook_timeout=notebook_timeout, threads=threads,
                               limits=limits, package=package)
                   for p in paths]
        return [f.result() for f in futures]
