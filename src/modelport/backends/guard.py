"""The first code every process modelport starts runs: it ties the process's life to the server's.

    python guard.py FD PARENT_PID -m MODULE ARGS...   a Python module, run in this same process (like `python -m`)
    python guard.py FD PARENT_PID SCRIPT ARGS...      a Python script, run in this same process (like `python SCRIPT`)
    python guard.py FD PARENT_PID --exec ARGV...      any other program, run as a child of this process

Two guards, because each misses a case the other covers:
- the parent-death signal (Linux `prctl(PR_SET_PDEATHSIG)`): the kernel SIGKILLs this process when the server dies,
  even by `kill -9`, whatever it is doing (even stuck in C code that holds the GIL);
- the watched pipe: FD is the read end of a pipe whose only write end the server holds and never writes to. The
  kernel closes it when the server dies. A small watcher process, forked here before anything else runs, reads it;
  at EOF, or when this process dies, it ends the whole process group: the children this process started, which
  the parent-death signal does not reach (they re-parent), end with it. A process and not a thread, so that it is
  neither killed with this one first nor starved of the GIL.
The server starts each process as the leader of its own session and process group (see backends/local.py).

This file is run by path, by interpreters that may not have modelport installed (an orchestration's environment), so
it imports only the standard library.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int, sig: int) -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the pipe still ends us
        pass
    if os.getppid() != parent:  # it died before the signal was armed
        _end_group()


_group: int | None = None  # the process group this guard leads (None: not started by modelport, end only itself)


def _end_group() -> None:
    """SIGKILL to the whole group (the watcher and the target with it), or to this process only."""
    try:
        if _group is not None:
            os.killpg(_group, signal.SIGKILL)
    finally:
        os.kill(os.getpid(), signal.SIGKILL)


def _watch(fd: int) -> None:
    """Fork the watcher (see above). This process keeps nothing of the pipe: the watcher holds the read end."""
    leader = os.getpid()
    if os.fork() == 0:
        try:
            null = os.open(os.devnull, os.O_RDWR)
            for std in (0, 1, 2):  # hold none of the pipes the server reads the leader's output from
                os.dup2(null, std)
            os.closerange(3, fd)
            os.closerange(fd + 1, 65536)
            signal.signal(signal.SIGTERM, lambda *_: _end_group())
            _die_with_parent(leader, signal.SIGTERM)  # the leader died (or exited): end what it left
            while os.read(fd, 1):  # nothing is ever written; b"" means the server is gone
                pass
        finally:
            _end_group()
    os.close(fd)


def _watch_thread(fd: int) -> None:
    """The watcher as a thread, where this process only waits for its child (`--exec`)."""
    def wait_for_eof() -> None:
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass
        _end_group()

    threading.Thread(target=wait_for_eof, name="modelport-guard", daemon=True).start()


def main(argv: list[str]) -> int:
    global _group
    fd, parent, rest = int(argv[0]), int(argv[1]), argv[2:]
    if os.getsid(0) == os.getpid():  # modelport starts every process as a session (and group) leader
        _group = os.getpid()
    if rest and rest[0] == "--exec":
        return _supervise(fd, parent, rest[1:])
    _die_with_parent(parent, signal.SIGKILL)
    _watch(fd)  # before the target starts any thread: fork is safe here
    if rest[0] == "-m":
        sys.argv = [rest[1], *rest[2:]]
        sys.path[0] = os.getcwd()  # what `python -m` puts first, instead of this file's folder
        runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(rest)
        sys.path[0] = os.path.dirname(os.path.abspath(rest[0]))  # what `python SCRIPT` puts first
        runpy.run_path(rest[0], run_name="__main__")
    return 0


def _supervise(fd: int, parent: int, command: list[str]) -> int:
    """A program that is not Python: run it as a child in this group and end the group when the server dies (the
    parent-death signal here is SIGTERM, handled, so that the child is ended too and not only this process)."""
    import subprocess

    signal.signal(signal.SIGTERM, lambda *_: _end_group())
    _die_with_parent(parent, signal.SIGTERM)
    _watch_thread(fd)
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
