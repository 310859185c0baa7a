"""Grade reports: ``grades.csv`` (one row per student and chapter) and ``grades.json``."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from attnbook.course.grading import ExerciseResult, Submission

__all__ = ["write_grades"]


def write_grades(submissions: Sequence[Submission], out_dir: str | Path,
                 sandbox: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``grades.csv`` (one column per exercise) and ``grades.json`` into ``out_dir``.

    ``sandbox`` (what :func:`attnbook.course.sandbox.available` found) is stored in the JSON.
    """
    if isinstance(submissions, (str, bytes)) or not all(isinstance(s, Submission) for s in submissions):
        raise TypeError("expected a sequence of Submission (what grade_folder returns)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def column(s: Submission, e: ExerciseResult) -> str:  # "05:5.2": chapter number and exercise
        return f"{s.chapter[:2]}:{e.label}" if s.chapter else e.label

    labels = list(dict.fromkeys(column(s, e) for s in submissions for e in s.exercises))
    csv_path, json_path = out / "grades.csv", out / "grades.json"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "chapter", "status", *labels, "points", "max_points", "seconds", "file"])
        for s in submissions:
            scores = {column(s, e): e.points for e in s.exercises}
            writer.writerow([s.student, s.chapter, s.status, *(scores.get(c, "") for c in labels), s.points,
                             len(s.exercises), s.seconds, s.path])
    records = []
    for s in submissions:
        record = asdict(s)
        record["points"], record["max_points"] = s.points, len(s.exercises)
        records.append(record)
    data: dict[str, Any] = {"submissions": records}
    if sandbox is not None:
        data["sandbox"] = sandbox
    json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return csv_path, json_path
