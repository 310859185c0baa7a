"""Run one submission and grade it: ``python -m attnbook.course.worker PLAN.json`` (secret on stdin).

The grading worker is a process of its own that never runs submitted code: it starts
the submission's kernel in the sandbox (:mod:`attnbook.course.sandbox`), runs the
submission's cells there with nbclient, and at each graded cell calls the check
*here*, with the checks imported from the installed package in this process. Each
argument that names something in the submission (the student's function) becomes a
proxy: calling it sends the arguments to the kernel and reads the result back as
plain data (:mod:`attnbook.course.wire`). So a submission that prints ``PASS``,
replaces ``attnbook.check`` or the exercise checks in its kernel, or fakes a reply,
changes nothing here; it can only return wrong values, or fail.

Statements of a check cell that are not ``exercises.chNN.check_*`` calls (plain
``assert`` lines among hidden tests) run in the kernel: they can make the exercise
fail, never pass. The verdicts go to a result file that only this process can write
(Landlock), signed with HMAC-SHA256 under a per-run secret that the grader passes on
standard input (never in the kernel's environment, arguments or files).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import hmac
import importlib
import io
import json
import os
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from attnbook.course import wire
from attnbook.course.markers import METADATA_KEY, check_target, nbformat

__all__ = ["fingerprint", "sign", "verify", "main"]

_PACKAGE = Path(__file__).resolve().parent


def fingerprint() -> dict[str, str]:
    """SHA-256 of every source file of :mod:`attnbook.course` (the checks, the grader)."""
    return {str(p.relative_to(_PACKAGE)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(_PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


def sign(payload: dict, secret: str) -> dict:
    text = json.dumps(payload, sort_keys=True)
    return {"payload": text, "hmac": hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()}


def verify(signed: Any, secret: str) -> dict | None:
    """The payload of a signed result, or None when it was not signed with ``secret``."""
    if not isinstance(signed, dict) or not isinstance(signed.get("payload"), str):
        return None
    want = hmac.new(secret.encode(), signed["payload"].encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, str(signed.get("hmac", ""))):
        return None
    return json.loads(signed["payload"])


class CallTimeout(BaseException):
    """The student's code ran past the time limit per cell (BaseException: checks must not catch it)."""


class KernelDied(BaseException):
    """The submission's kernel died (past its memory or CPU limit, or it exited)."""


class Unresolved(Exception):
    """An argument of the check (the student's function) does not exist or cannot be evaluated."""


def _submission_error(name: str, message: str) -> Exception:
    """An exception named as the one the student's code raised (the name is only text)."""
    safe = re.sub(r"\W", "", str(name))[:60] or "Error"
    return type(safe if safe[0].isalpha() else f"E{safe}", (Exception,), {})(str(message))


class KernelFunction:
    """Stands for a function that lives in the submission's kernel; calling it calls that."""

    def __init__(self, session: "Session", expression: str):
        self.session, self.expression = session, expression

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        reply = self.session.remote("call", self.expression, {"args": list(args), "kwargs": kwargs})
        if "ok" in reply:
            return reply["ok"]
        name, message = (list(reply.get("raised") or reply.get("unresolved") or ["Error", "no result"]) + [""])[:2]
        if name == "NotImplementedError":
            raise NotImplementedError(message)
        raise _submission_error(name, message)

    def in_kernel(self, function: str) -> "KernelFunction":
        """Stands for ``function(<the submission's object>, *args)``, run in the kernel.

        For exercises whose answer is not a function of data (a module class that must
        be built and trained where it was defined): ``function`` (``"module:name"`` in
        :mod:`attnbook`) runs the trial there, and only its plain-data result comes back
        for the check to judge. The kernel can fake that data, as it can any result.
        """
        module, _, name = function.partition(":")
        if not re.fullmatch(r"attnbook(\.\w+)*", module) or not name.isidentifier():
            raise ValueError(f"expected 'attnbook.<module>:<function>', got {function!r}")
        expression = (f"(lambda *a, **k: __import__('importlib').import_module({module!r}).{name}"
                      f"(({self.expression}), *a, **k))")
        return KernelFunction(self.session, expression)

    def __repr__(self) -> str:
        return f"<the submission's {self.expression}>"


class Session:
    """One submission's kernel, and the checks run against it."""

    def __init__(self, client: Any, cell_timeout: float):
        self.client, self.cell_timeout, self.index = client, cell_timeout, 0

    def run(self, source: str) -> list[dict]:
        """Run ``source`` in the kernel as a cell of its own; its outputs."""
        from nbclient.exceptions import DeadKernelError

        cell = nbformat().v4.new_code_cell(source)
        try:
            self.client.execute_cell(cell, self.index, store_history=False)
        except DeadKernelError as error:
            raise KernelDied(str(error)) from None
        return list(cell.outputs)

    def remote(self, mode: str, expression: str, call: dict | None) -> dict:
        nonce = secrets.token_hex(8)
        payload = wire.dumps(call) if call is not None else ""
        outputs = self.run(f"from attnbook.course.wire import serve as __attnbook_serve\n"
                           f"__attnbook_serve(lambda: ({expression}), {mode!r}, {payload!r}, {nonce!r})")
        error = next((o for o in outputs if o.get("output_type") == "error"), None)
        if error is not None and error.get("ename") == "KeyboardInterrupt":
            raise CallTimeout(f"ran past the time limit per cell ({self.cell_timeout:g} s; an endless loop?)")
        text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
        prefix = f"{wire.MARK} {nonce} "
        lines = [line[len(prefix):] for line in text.split("\n") if line.startswith(prefix)]
        if not lines:
            detail = f"{error.get('ename')}: {error.get('evalue')}" if error else "no reply"
            raise _submission_error("GradingCallFailed", f"the call in the submission's kernel failed ({detail})")
        reply = wire.loads(lines[-1])
        if not isinstance(reply, dict):
            raise wire.WireError("expected a reply dict from the kernel")
        return reply

    def argument(self, node: ast.expr) -> Any:
        """A literal in the check cell stays here; a name or expression is the submission's."""
        try:
            return ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            pass
        expression = ast.unparse(node)
        reply = self.remote("resolve", expression, None)
        if "unresolved" in reply:
            name, message = (list(reply["unresolved"]) + [""])[:2]
            raise Unresolved(f"{name}: {message}")
        if reply.get("callable") is True:
            return KernelFunction(self, expression)
        return reply.get("ok")

    def trusted_check(self, chapter: str, name: str, call: ast.Call) -> dict:
        module = importlib.import_module(f"attnbook.course.exercises.{chapter}")
        check = getattr(module, name, None)
        if name not in getattr(module, "__all__", []) or not callable(check):
            return {"status": "error", "message": f"the package has no check {chapter}.{name}"}
        from attnbook.course.check import CheckFailed

        try:
            args = [self.argument(a) for a in call.args]
            kwargs = {k.arg: self.argument(k.value) for k in call.keywords if k.arg}
            with contextlib.redirect_stdout(io.StringIO()):
                check(*args, **kwargs)
        except CallTimeout as error:
            return {"status": "timeout", "message": str(error)}
        except Unresolved as error:
            return {"status": "error", "message": str(error)}
        except CheckFailed as error:
            status = "not done" if "not implemented yet" in str(error) else "fail"
            return {"status": status, "message": f"CheckFailed: {error}"}
        except AssertionError as error:
            return {"status": "fail", "message": f"AssertionError: {error}"}
        except Exception as error:  # noqa: BLE001 - a check that cannot run is an error, never a pass
            return {"status": "error", "message": f"{type(error).__name__}: {error}"}
        return {"status": "pass", "message": ""}

    def grade(self, source: str) -> dict:
        """Run one graded cell: trusted checks here, other statements in the kernel (fail-only)."""
        try:
            statements = ast.parse(source).body
        except SyntaxError as error:
            return {"status": "error", "message": f"the check cell does not parse: {error}"}
        checked = 0
        for statement in statements:
            target = check_target(statement)
            if target is None:
                outputs = self.run(ast.get_source_segment(source, statement) or "")
                error = next((o for o in outputs if o.get("output_type") == "error"), None)
                if error is not None:
                    name, value = error.get("ename", ""), str(error.get("evalue", ""))
                    if name == "KeyboardInterrupt":
                        return {"status": "timeout", "message": "ran past the time limit per cell"}
                    status = "fail" if name in {"CheckFailed", "AssertionError"} else "error"
                    return {"status": status, "message": f"{name}: {value}"[:400]}
                continue
            checked += 1
            verdict = self.trusted_check(*target, statement.value)
            if verdict["status"] != "pass":
                verdict["message"] = verdict["message"][:400]
                return verdict
        if not checked:
            return {"status": "error", "message": "the check cell calls no exercises.chNN.check_* function"}
        return {"status": "pass", "message": ""}


def _kernel_manager(root: Path, sandbox: list[str]) -> Any:
    from jupyter_client import AsyncKernelManager

    class SandboxedKernelManager(AsyncKernelManager):  # nbclient drives it from its event loop
        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            command = super().format_kernel_cmd(extra_arguments)
            return [sys.executable, "-m", "attnbook.course.sandbox", "--root", str(root), *sandbox, "--", *command]

    return SandboxedKernelManager(kernel_name="python3", transport="ipc", ip=str(root / "ipc"),
                                  connection_file=str(root / "connection.json"))


def run(plan: dict, secret: str) -> None:
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    results: dict[str, dict] = {}
    out = Path(plan["result"])

    def save(done: bool, problem: str = "") -> None:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(sign({"exercises": results, "done": done, "problem": problem}, secret)))
        os.replace(tmp, out)

    if fingerprint() != plan["fingerprint"]:
        save(True, "the grading package changed on disk since grading began (did a submission write to it?)")
        return
    root = Path(plan["root"])
    nb = nbformat().read(plan["notebook"], as_version=4)
    client = NotebookClient(nb, km=_kernel_manager(root, plan["sandbox"]), timeout=int(max(1, plan["cell_timeout"])),
                            allow_errors=True, interrupt_on_timeout=True, record_timing=False,
                            resources={"metadata": {"path": str(root)}})
    session = Session(client, plan["cell_timeout"])
    save(False)
    try:
        with client.setup_kernel(env={**os.environ, **plan.get("env", {})}):
            process = getattr(getattr(client.km, "provisioner", None), "process", None)
            if process is not None:
                Path(plan["pid_file"]).write_text(str(process.pid))
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                session.index = index
                label = cell.get("metadata", {}).get(METADATA_KEY, {}).get("grade")
                if label:
                    started = time.perf_counter()
                    results[label] = {**session.grade(cell.source), "seconds": round(time.perf_counter() - started, 2)}
                    save(False)
                else:
                    client.execute_cell(cell, index)
    except (DeadKernelError, KernelDied):
        save(True, "the kernel died (past its memory or CPU limit?)")
        return
    save(True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m attnbook.course.worker PLAN.json  (the secret on standard input)")
    secret = sys.stdin.readline().strip()
    if len(secret) < 32:
        raise SystemExit("expected the per-run secret on standard input")
    run(json.loads(Path(argv[0]).read_text(encoding="utf-8")), secret)
    return 0


if __name__ == "__main__":
    sys.exit(main())
