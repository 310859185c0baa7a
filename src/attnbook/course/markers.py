"""nbgrader's markers in the chapter notebooks, and the exercises they make.

The chapter notebooks hold the worked solutions between nbgrader's markers, in code
cells::

    def split(x, num_heads):
        ### BEGIN SOLUTION
        ...the instructor's answer...
        ### END SOLUTION

and, optionally, tests that students must not see, in check cells::

    ### BEGIN HIDDEN TESTS
    exercises.ch05.check_more(split)
    ### END HIDDEN TESTS

An exercise is a Markdown heading ``### Exercise N.M: title``; every code cell after
it that calls ``exercises.chNN.check_...(...)`` is a graded item.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BEGIN_SOLUTION", "END_SOLUTION", "BEGIN_HIDDEN_TESTS", "END_HIDDEN_TESTS", "STUB_COMMENT",
           "METADATA_KEY", "Exercise", "find_exercises", "clear_solutions", "remove_hidden_tests",
           "split_check", "check_target"]

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN_TESTS, END_HIDDEN_TESTS = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
STUB_COMMENT = "# YOUR CODE HERE"
METADATA_KEY = "attnbook"

EXERCISE_HEADING = re.compile(r"^#{2,4}\s+Exercise\s+(\d+(?:\.\d+)*)\b[:.]?\s*(.*)$", re.MULTILINE)
CHECK_CALL = re.compile(r"\bexercises\.ch\d+\.check_\w+\s*\(")
EXERCISES_SECTION = re.compile(r"^##\s+Exercises\s*$", re.MULTILINE)
IMPORTS_ATTNBOOK = re.compile(r"^\s*(import attnbook\b|from attnbook\b)", re.MULTILINE)


def nbformat():
    """The nbformat module, or a clear error saying how to install it."""
    try:
        import nbformat as module
    except ImportError:
        raise ModuleNotFoundError("expected nbformat (pip install 'attnbook[course]') for student versions "
                                  "and grading, but it is not installed") from None
    return module


@dataclass
class Exercise:
    """One graded item: a check cell, and the solution cells it checks.

    ``label`` is the exercise's number from its heading (``"5.1"``), with a suffix
    (``"5.1b"``) when one exercise has several check cells.
    """

    label: str
    title: str
    check_cell: int
    solution_cells: list[int] = field(default_factory=list)


def cells_of(nb: Any) -> list[Any]:
    if not hasattr(nb, "cells") or not isinstance(nb.cells, list):
        raise TypeError(f"expected a notebook (nbformat.NotebookNode with .cells), got {type(nb).__name__}")
    return nb.cells


def find_exercises(nb: Any) -> list[Exercise]:
    """The graded items of a chapter notebook, in order.

    Raises ``ValueError`` for a check cell before any exercise heading.
    """
    found: list[Exercise] = []
    label, title, solutions, count = None, "", [], 0
    for index, cell in enumerate(cells_of(nb)):
        if cell.cell_type == "markdown":
            match = EXERCISE_HEADING.search(cell.source)
            if match:
                label, title, solutions, count = match.group(1), match.group(2).strip(), [], 0
            continue
        if cell.cell_type != "code":
            continue
        if BEGIN_SOLUTION in cell.source:
            solutions.append(index)
        if CHECK_CALL.search(cell.source):
            if label is None:
                raise ValueError(f"cell {index}: expected a check cell to follow a '### Exercise N.M: title' "
                                 f"heading, but no exercise heading comes before it")
            suffix = "" if count == 0 else "abcdefghijklmnopqrstuvwxyz"[count]
            found.append(Exercise(f"{label}{suffix}", title, index, list(solutions)))
            count += 1
    return found


def _marker_regions(source: str, begin: str, end: str, where: str) -> list[tuple[int, int]]:
    """Line index pairs (begin, end) of every marked region; ValueError if unbalanced."""
    regions, start = [], None
    for number, line in enumerate(source.split("\n")):
        stripped = line.strip()
        if stripped == begin:
            if start is not None:
                raise ValueError(f"{where}: expected {end!r} before the next {begin!r} (line {number + 1})")
            start = number
        elif stripped == end:
            if start is None:
                raise ValueError(f"{where}: found {end!r} without a {begin!r} before it (line {number + 1})")
            regions.append((start, number))
            start = None
    if start is not None:
        raise ValueError(f"{where}: expected {end!r} to close the {begin!r} on line {start + 1}, found none")
    return regions


def _source(source: Any) -> str:
    if not isinstance(source, str):
        raise TypeError(f"expected the cell source as a str, got {type(source).__name__}")
    return source


def clear_solutions(source: str, where: str = "cell") -> str:
    """Replace each solution region (markers included) with a stub, keeping its indentation.

    The same text as nbgrader's ``ClearSolutions`` preprocessor writes::

    >>> print(clear_solutions("def f(x):\\n    ### BEGIN SOLUTION\\n    return x\\n    ### END SOLUTION"))
    def f(x):
        # YOUR CODE HERE
        raise NotImplementedError()
    """
    lines = _source(source).split("\n")
    for start, stop in reversed(_marker_regions(source, BEGIN_SOLUTION, END_SOLUTION, where)):
        indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
        lines[start:stop + 1] = [f"{indent}{STUB_COMMENT}", f"{indent}raise NotImplementedError()"]
    return "\n".join(lines)


def remove_hidden_tests(source: str, where: str = "cell") -> str:
    """Remove each hidden-test region (markers included), as nbgrader's ``ClearHiddenTests`` does."""
    lines = _source(source).split("\n")
    for start, stop in reversed(_marker_regions(source, BEGIN_HIDDEN_TESTS, END_HIDDEN_TESTS, where)):
        del lines[start:stop + 1]
    return "\n".join(lines).rstrip("\n")


def split_check(source: str) -> tuple[str, str]:
    """A check cell cut after its last check call (or hidden-test block): (graded part, the rest)."""
    try:
        statements = ast.parse(source).body
    except SyntaxError:
        return source, ""
    lines = source.split("\n")
    last = 0
    for statement in statements:
        segment = "\n".join(lines[statement.lineno - 1:statement.end_lineno])
        if CHECK_CALL.search(segment):
            last = max(last, statement.end_lineno)
    for number, line in enumerate(lines, start=1):
        if line.strip() == END_HIDDEN_TESTS:
            last = max(last, number)
    if last == 0:
        return source, ""
    return "\n".join(lines[:last]), "\n".join(lines[last:]).strip("\n")


def check_target(node: ast.AST) -> tuple[str, str] | None:
    """``("ch05", "check_split_heads")`` when ``node`` is a statement calling ``[...]exercises.ch05.check_...(...)``."""
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        return None
    func = node.value.func
    if not (isinstance(func, ast.Attribute) and func.attr.startswith("check_")
            and isinstance(func.value, ast.Attribute) and re.fullmatch(r"ch\d+", func.value.attr)):
        return None
    owner = func.value.value
    if isinstance(owner, ast.Name) and owner.id == "exercises":
        return func.value.attr, func.attr
    if isinstance(owner, ast.Attribute) and owner.attr == "exercises":
        return func.value.attr, func.attr
    return None
