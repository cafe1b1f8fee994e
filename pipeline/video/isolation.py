"""Run a function in a long-lived child process, so a native crash (a segfault in a video decoder) or a hang
fails one element instead of killing the Beam worker that holds hundreds of others.

Why not Beam's ``with_exception_handling(use_subprocess=True)``: it reports failures as a separate output of
(element, exception) pairs, whereas a stage here must turn a crash into an ``Outcome`` with a reason code, and
it has no per-element timeout that kills a hung decoder. Why not ``multiprocessing``: its spawn/forkserver
modes re-import the parent's ``__main__`` (which breaks under scripts and some runners) and fork copies gRPC
threads. The child is ``python -m pipeline.video.isolation``, talking length-prefixed pickles over its stdin/stdout;
it is started once and reused, and restarted after a crash or timeout. The cost is pickling each element's
result across the pipe: benchmarks/segment_bench.py measures it.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

_HEADER = struct.Struct("<Q")


class WorkerCrashed(RuntimeError):
    """The child process died while running the call (signal or exit code in the message)."""


class WorkerTimeout(RuntimeError):
    """The call ran longer than the timeout; the child was killed."""


def _send(stream: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)  # an unbuffered pipe returns what is there, not necessarily ``left``
        if not chunk:
            raise EOFError("the pipe closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _recv(stream: BinaryIO) -> Any:
    (size,) = _HEADER.unpack(_read_exact(stream, _HEADER.size))
    return pickle.loads(_read_exact(stream, size))


def _serve() -> None:
    """Child side: keep the protocol on a private copy of stdout; library prints go to stderr."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    while True:
        try:
            request = _recv(inp)
        except EOFError:
            return
        except Exception as exc:  # e.g. the function's module does not import here
            _send(out, (False, RuntimeError(f"cannot load the request: {type(exc).__name__}: {exc}")))
            continue
        fn, args = request
        try:
            reply = (True, fn(*args))
        except Exception as exc:  # every error goes back to the caller
            reply = (False, exc)
        try:
            _send(out, reply)  # pickle.dumps runs before any byte is written: a failure leaves the pipe in step
        except Exception as exc:  # PicklingError, TypeError, AttributeError, RecursionError...: say so, keep serving
            what = "result" if reply[0] else "exception"
            _send(out, (False, RuntimeError(f"the {what} does not pickle: {type(exc).__name__}: {exc}")))


class IsolatedWorker:
    """``call(fn, *args)`` runs ``fn(*args)`` in the child and returns its result or re-raises its exception.

    ``fn`` must be importable by name (a module-level function), as for any pickled callable.
    """

    def __init__(self, timeout_s: float | None = None, max_calls: int | None = None):
        self.timeout_s = timeout_s
        self.max_calls = max_calls  # restart the child after this many calls (1: a fresh process per call)
        self._process: subprocess.Popen | None = None
        self._calls = 0

    def _start(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))  # same modules as here
        self._process = subprocess.Popen([sys.executable, "-m", "pipeline.video.isolation"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, bufsize=0, env=env)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._process is None or self._process.poll() is not None or (
                self.max_calls is not None and self._calls >= self.max_calls):
            self.close()
            self._start()
            self._calls = 0
        self._calls += 1
        process = self._process
        try:
            _send(process.stdin, (fn, args))
            ready, _, _ = select.select([process.stdout], [], [], self.timeout_s)
            if not ready:
                self.close()
                raise WorkerTimeout(f"no result after {self.timeout_s:g} s; the worker process was killed")
            ok, value = _recv(process.stdout)
        except (EOFError, BrokenPipeError):
            code = process.wait(10)
            self.close()
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            raise WorkerCrashed(f"the worker process died ({how})") from None
        except BaseException:
            # The arguments did not pickle, or the reply did not unpickle here (UnpicklingError, a class that
            # does not import): the call failed, not the child, but a fresh child costs ~0.1 s and rules out
            # any doubt about what is left in the pipe. The caller sees the original exception.
            self.close()
            raise
        if not ok:
            raise value
        return value

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(10)
        for stream in (process.stdin, process.stdout):
            stream.close()


if __name__ == "__main__":
    _serve()
