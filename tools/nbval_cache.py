"""A pytest plugin: nbval's run of each notebook also fills the book's jupyter-cache.

``make test`` validates every chapter with nbval and then builds the book. Without this
plugin the book build executes every chapter a second time. With it, nbval stays the
validator (one kernel per notebook, a failing cell fails the test), and each notebook
whose code cells ALL ran and passed is written, with the outputs the kernel produced,
into the jupyter-cache that Jupyter Book reads with ``execute_notebooks: cache``. The
book build then finds the notebook there (jupyter-cache matches on the code cells'
source and metadata and the kernelspec) and renders those outputs instead of executing
again; a notebook whose code changed since, or that failed, skipped or was not run, is
not in the cache, so the book build executes it itself.

The outputs are built from the kernel's messages by nbclient's own message handling
(the code the book build would otherwise run), so streams, displays, ``clear_output``
and display updates come out as in a direct execution. The run time recorded (kernel
start to last cell) fills the status page's execution table.

Usage (the Makefile does this)::

    python -m pytest -p tools.nbval_cache --nbval-cache _build/.jupyter_cache \\
        --nbval-lax --nbval-current-env notebooks

The cache is emptied when the session starts, so after the run it holds exactly the
notebooks this run executed and passed. Without ``--nbval-cache`` the plugin does nothing.

Under pytest-xdist (``-n 2 --dist loadfile``: each notebook runs whole on one worker)
the controller empties the cache before the workers start, each worker writes the
notebooks it ran (under a file lock: one writer at a time), and the summary lists what
the cache holds at the end.
"""

from __future__ import annotations

import copy
import fcntl
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest

OPTION = "--nbval-cache"


@dataclass
class _Run:
    """What one notebook's nbval run produced so far."""

    nb: nbformat.NotebookNode  # a copy of the notebook nbval read, outputs filled in here
    code_cells: list[int]  # indices in nb.cells of the code cells, in nbval's cell order
    started: float
    client: Any = None  # nbclient.NotebookClient used only to turn messages into outputs
    passed: set[int] = field(default_factory=set)  # nbval cell numbers that ran and passed
    failed: bool = False
    finished: float | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("nbval").addoption(
        OPTION, action="store", default=None, metavar="DIR",
        help="write each notebook that passes into the jupyter-cache at DIR (emptied first), "
             "so that a Jupyter Book build with execute_notebooks: cache does not execute it again")


def _cache_dir(config: pytest.Config) -> Path | None:
    value = config.getoption(OPTION)
    if value is None:
        return None
    if not (config.getoption("nbval") or config.getoption("nbval_lax")):
        raise pytest.UsageError(f"{OPTION} needs --nbval or --nbval-lax (it caches nbval's runs)")
    return Path(value).resolve()


def pytest_configure(config: pytest.Config) -> None:
    path = _cache_dir(config)
    if path is not None:
        config.pluginmanager.register(_CachePlugin(path), "nbval-cache-writer")


def _is_cell(item: pytest.Item) -> bool:
    from nbval.plugin import IPyNbCell

    return isinstance(item, IPyNbCell)


class _CachePlugin:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.runs: dict[str, _Run] = {}  # by notebook node id
        self.written: list[Path] = []

    # --- session -------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)  # under xdist: before the controller starts its workers
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # Start empty: an entry left by an earlier run (or an earlier book build) would be
        # served even if the package changed since; after this run the cache holds only
        # what this run executed and validated. An xdist worker leaves it to the controller.
        if hasattr(session.config, "workerinput"):
            return
        if self.path.exists():
            if any(self.path.iterdir()) and not (self.path / "global.db").is_file():
                raise pytest.UsageError(f"{OPTION} {self.path}: expected a jupyter-cache folder (with global.db) "
                                        f"or an empty or new one, found other files; not emptying it")
            shutil.rmtree(self.path)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(terminalreporter.config, "workerinput") or not (self.path / "global.db").is_file():
            return
        from jupyter_cache import get_cache

        terminalreporter.write_sep("-", f"nbval-cache: {self.path}")
        for record in sorted(get_cache(str(self.path)).list_cache_records(), key=lambda r: r.uri):
            terminalreporter.write_line(f"{record.uri}: cached")
        for run_id, run in self.runs.items():
            if Path(run_id) not in self.written:
                terminalreporter.write_line(f"{run_id}: NOT cached (failed, skipped or not run)")

    # --- per cell --------------------------------------------------------------------------

    def _run_for(self, item: pytest.Item) -> _Run:
        key = str(item.parent.path)
        if key not in self.runs:
            nb = copy.deepcopy(item.parent.nb)
            code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
            for i in code:
                nb.cells[i].outputs = []
                nb.cells[i].execution_count = None
            self.runs[key] = _Run(nb=nb, code_cells=code, started=time.time())
        return self.runs[key]

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item):
        if _is_cell(item):
            self._run_for(item)  # before nbval starts the kernel: the run time includes it
        try:
            return (yield)
        except BaseException:
            if _is_cell(item):
                self._run_for(item).failed = True
            raise

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        if not _is_cell(item):
            return (yield)
        run = self._run_for(item)
        notebook_file = item.parent
        kernel = notebook_file.kernel
        messages: list[dict] = []
        msg_ids: list[str] = []
        execute, get_message = kernel.execute_cell_input, notebook_file.get_kernel_message

        def recording_execute(*args: Any, **kwargs: Any) -> str:
            msg_id = execute(*args, **kwargs)
            msg_ids.append(msg_id)
            return msg_id

        def recording_get(*args: Any, **kwargs: Any) -> dict:
            msg = get_message(*args, **kwargs)
            messages.append(msg)
            return msg

        kernel.execute_cell_input = recording_execute
        notebook_file.get_kernel_message = recording_get
        try:
            result = yield
        except BaseException:
            run.failed = True  # a failing cell, a skip (nbval marks) or a timeout
            raise
        finally:
            del kernel.execute_cell_input, notebook_file.get_kernel_message
        self._record_outputs(run, item.cell_num, msg_ids, messages)
        run.passed.add(item.cell_num)
        run.finished = time.time()
        return result

    def _record_outputs(self, run: _Run, cell_num: int, msg_ids: list[str], messages: list[dict]) -> None:
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionComplete

        if len(msg_ids) != 1:
            raise RuntimeError(f"expected nbval to execute cell {cell_num} once, saw {len(msg_ids)} requests")
        if run.client is None:
            run.client = NotebookClient(run.nb, record_timing=False)
            run.client.reset_execution_trackers()
        index = run.code_cells[cell_num]
        cell = run.nb.cells[index]
        run.client.clear_before_next_output = False
        for msg in messages:
            if msg["parent_header"].get("msg_id") != msg_ids[0]:
                continue
            try:
                run.client.process_message(msg, cell, index)
            except CellExecutionComplete:
                break
        # nbval executes with store_history=False, so the kernel's counter does not move;
        # number the cells as a top-to-bottom run does (jupyter-cache checks this).
        cell.execution_count = cell_num + 1
        for output in cell.outputs:
            if output.get("output_type") == "execute_result":
                output.execution_count = cell_num + 1

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None):
        try:
            return (yield)
        finally:
            if _is_cell(item) and (nextitem is None or nextitem.parent is not item.parent):
                self._finish(self._run_for(item), Path(item.parent.path))

    # --- per notebook ----------------------------------------------------------------------

    def _finish(self, run: _Run, path: Path) -> None:
        if run.failed or run.finished is None or len(run.passed) != len(run.code_cells):
            return
        from jupyter_cache import get_cache
        from jupyter_cache.base import CacheBundleIn

        if run.client is not None and run.client.widget_state:
            run.client.set_widgets_metadata()
        bundle = CacheBundleIn(run.nb, str(path), data={"execution_seconds": run.finished - run.started})
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path.parent / f"{self.path.name}.lock", "w") as lock:  # one writer at a time (xdist)
            fcntl.flock(lock, fcntl.LOCK_EX)
            get_cache(str(self.path)).cache_notebook_bundle(bundle, check_validity=True, overwrite=True)
        self.written.append(path)
