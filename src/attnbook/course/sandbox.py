"""Start a submission's kernel inside limits: ``python -m attnbook.course.sandbox [options] -- cmd...``.

Applied in this order, in the kernel's own process, before it runs any code (then
``exec`` replaces this launcher by the kernel, so the limits hold for the kernel and
everything it starts):

* its folder (``--root``): working directory, ``TMPDIR``, ``HOME`` for IPython and
  Matplotlib; standard input from ``/dev/null``, standard output and error to a log
  file there (never into the grader's pipes);
* resource limits (``setrlimit``): address space (``--memory-gb``), CPU seconds
  (``--cpu-seconds``), the size of any file it writes (``--file-mb``), no core dumps;
* no network where the OS allows: a network namespace of its own (``unshare``; as
  root directly, else through a user namespace when the kernel permits them) and,
  with Landlock ABI 4 or newer, no TCP bind or connect at all;
* Linux Landlock (5.13 or newer): no writes outside its folder (and ``/dev/null``,
  ``/dev/shm``), no ptrace of or signals to processes outside the sandbox (ABI 6+).

:func:`available` says which of these this machine provides; the grader stores it in
``grades.json``. Nothing here is a substitute for an OS account or a container of
its own: see the instructors' page for what is and is not protected.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["available", "landlock_abi", "main"]

_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT = 444, 445, 446  # the same numbers on every Linux architecture
_PR_SET_NO_NEW_PRIVS, _PR_SET_PDEATHSIG = 38, 1
_CLONE_NEWNET, _CLONE_NEWUSER = 0x40000000, 0x10000000
# Landlock filesystem rights that write (reads stay allowed everywhere).
_WRITE_FILE, _TRUNCATE = 1 << 1, 1 << 14
_FS_WRITES_ABI1 = sum(1 << b for b in (1, 4, 5, 6, 7, 8, 9, 10, 11, 12))
_REFER = 1 << 13
_NET_BIND, _NET_CONNECT = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> Any:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers (0 when it has none, or not on Linux)."""
    if not sys.platform.startswith("linux"):
        return 0
    version = _libc().syscall(_SYS_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(0, int(version))


def _landlock(root: Path, abi: int) -> None:
    """No writes outside ``root`` (and /dev/null, /dev/shm); no TCP; no signals or ptrace outside."""
    libc = _libc()
    writes = _FS_WRITES_ABI1 | (_REFER if abi >= 2 else 0) | (_TRUNCATE if abi >= 3 else 0)
    attr = _RulesetAttr(writes, (_NET_BIND | _NET_CONNECT) if abi >= 4 else 0,
                        (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = libc.syscall(_SYS_CREATE, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for path, access in ((root, writes), (Path("/dev/shm"), writes), (Path("/dev/null"), _WRITE_FILE
                                                                               | (_TRUNCATE if abi >= 3 else 0))):
            if not path.exists():
                continue
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneath(access, fd)
                if libc.syscall(_SYS_ADD_RULE, ruleset, 1, ctypes.byref(rule), 0) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(_SYS_RESTRICT, ruleset, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)


def _no_network() -> str:
    """Enter a network namespace of its own; say how, or why not."""
    if not sys.platform.startswith("linux"):
        return "not isolated (not Linux)"
    libc = _libc()
    if os.geteuid() == 0 and libc.unshare(_CLONE_NEWNET) == 0:
        return "isolated (network namespace)"
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        return f"not isolated (unshare: {os.strerror(ctypes.get_errno())})"
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w", encoding="ascii") as handle:
            handle.write(text)
    return "isolated (user and network namespace)"


def _limits(memory_gb: float, cpu_seconds: int, file_mb: float) -> None:
    if memory_gb > 0:
        size = int(memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (size, size))
    if cpu_seconds > 0:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    if file_mb > 0:
        size = int(file_mb * 2**20)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _enter(root: Path, memory_gb: float, cpu_seconds: int, file_mb: float, network: bool, gpu: bool) -> dict:
    root = root.resolve()
    for sub in ("tmp", "home"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    os.chdir(root)
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(root / "kernel.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ.update({"TMPDIR": str(root / "tmp"), "IPYTHONDIR": str(root / "home" / ".ipython"),
                       "MPLCONFIGDIR": str(root / "home" / ".matplotlib"), "PYTHONDONTWRITEBYTECODE": "1",
                       "JUPYTER_RUNTIME_DIR": str(root / "home" / "runtime")})
    if not gpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the checks are small; an address-space limit breaks CUDA
    if sys.platform.startswith("linux"):
        _libc().prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)  # the kernel dies with the grading worker
    report = {"network": "allowed (--network)" if network else _no_network()}
    _limits(memory_gb, cpu_seconds, file_mb)
    abi = landlock_abi()
    if abi:
        _landlock(root, abi)
    report["landlock"] = abi
    return report


def available() -> dict[str, Any]:
    """What this machine provides: Landlock's ABI, whether a network namespace can be made, rlimits."""
    abi = landlock_abi()
    probe = subprocess.run([sys.executable, "-c", "from attnbook.course.sandbox import _no_network as n; "
                            "print(n())"], capture_output=True, text=True, timeout=60)
    network = probe.stdout.strip() or f"not isolated ({probe.stderr.strip()[-200:]})"
    return {"platform": sys.platform, "landlock_abi": abi,
            "writes_outside_folder": "blocked (Landlock)" if abi else "NOT blocked (no Landlock on this OS)",
            "tcp": "blocked (Landlock ABI >= 4)" if abi >= 4 else "not blocked by Landlock",
            "signals_and_ptrace_outside": ("blocked (Landlock ABI >= 6)" if abi >= 6 else
                                           "ptrace blocked, signals not" if abi else "not blocked"),
            "network_namespace": network, "rlimits": "address space, CPU seconds, file size, no core dumps"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        raise SystemExit("usage: python -m attnbook.course.sandbox --root DIR [options] -- command ...")
    cut = argv.index("--")
    parser = argparse.ArgumentParser(prog="python -m attnbook.course.sandbox")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--memory-gb", type=float, default=4.0)
    parser.add_argument("--cpu-seconds", type=int, default=0)
    parser.add_argument("--file-mb", type=float, default=256.0)
    parser.add_argument("--network", action="store_true", help="leave the network as it is")
    parser.add_argument("--gpu", action="store_true", help="leave the GPUs visible")
    args = parser.parse_args(argv[:cut])
    command = argv[cut + 1:]
    if not command:
        raise SystemExit("expected a command after --")
    report = _enter(args.root, args.memory_gb, args.cpu_seconds, args.file_mb, args.network, args.gpu)
    print(json.dumps({"sandbox": report}), flush=True)  # into kernel.log, for whoever debugs a submission
    os.execvp(command[0], command)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
