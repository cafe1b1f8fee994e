"""An output's lease: ``<output>/lease.json`` names the one job writing into the output, so that a second
``run`` into it is refused while the first lives.

The holder is the launcher (host, pid, start time; a heartbeat every ``HEARTBEAT_S`` for other hosts) and, once a
remote job is submitted, that job, which keeps holding the output after a ``--detach``-ed launcher leaves. A lease
is live while its launcher runs (same pid and start time here, a heartbeat younger than ``LAUNCHER_TTL_S``
elsewhere) or its job has not finished (``pipeline.finalize.job_finished``) within ``JOB_TTL_S``. A live lease
refuses a second ``run`` (exit 73) naming the holder; a dead one is taken over with a warning; ``--force-lease``
takes over a live one. ``finalize`` and a finished local run release it.

Atomicity: locally the lease is taken under an exclusive ``flock`` and created with ``O_CREAT | O_EXCL``, so one of
two launchers wins. On ``gs://`` (no create-if-absent) it is check-then-write-then-read-back: launches within about
a second of each other can both pass, so one job per output stays a rule for the people starting jobs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

from apache_beam.io.filesystems import FileSystems

from pipeline.io import storage

log = logging.getLogger(__name__)

LEASE_FILE = "lease.json"
HEARTBEAT_S = 60.0  # a live launcher rewrites its lease this often
LAUNCHER_TTL_S = 600.0  # a launcher on another host is taken for gone this long after its last heartbeat
JOB_TTL_S = 14 * 86400.0  # a submitted job's lease expires this long after its submission


class LeaseHeld(RuntimeError):
    """The output's lease is live and held by someone else; the message names the holder."""


@dataclasses.dataclass(frozen=True)
class Lease:
    token: str  # unique to one taking: renewing and releasing touch only the lease this taking wrote
    runner: str  # "local", or the Beam runner the job was submitted to ("DataflowRunner")
    host: str  # the launcher's host
    pid: int | None  # the launcher's pid while it holds the lease; None once a detached job holds it alone
    pid_started: str | None  # the launcher process's start (Linux: /proc/<pid>/stat), None where unknown
    started_s: float  # when the lease was taken (epoch seconds)
    heartbeat_s: float  # when the launcher last renewed it
    job_id: str | None = None  # the submitted job's id (remote runners)
    expires_s: float | None = None  # a job's lease: taken for gone after this (epoch seconds)

    def holder(self) -> str:
        """Who holds it, in a few words: the job and/or the launcher, and since when."""
        parts = [f"{self.runner} job {self.job_id}"] if self.job_id else []
        if self.pid is not None:
            parts.append(f"launcher pid {self.pid} on {self.host}")
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started_s))
        return f"{' with '.join(parts) or 'an unknown holder'} (since {since})"

    def to_json(self) -> bytes:
        return (json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Lease:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(data).items() if k in fields})


def path(output_dir: str) -> str:
    return FileSystems.join(output_dir, LEASE_FILE)


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), None off Linux."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_runs(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        pass
    return started is None or _process_start(pid) in (None, started)


def for_launcher(runner: str = "local") -> Lease:
    """A lease for this process, the launcher of a run."""
    now = time.time()
    return Lease(token=uuid.uuid4().hex, runner=runner, host=socket.gethostname(), pid=os.getpid(),
                 pid_started=_process_start(os.getpid()), started_s=now, heartbeat_s=now)


def for_job(held: Lease, runner: str, job_id: str, detached: bool) -> Lease:
    """``held`` handed to the submitted job: the job holds it until it finishes or ``JOB_TTL_S`` passes;
    the launcher goes on holding it too unless it leaves (``detached``)."""
    now = time.time()
    return dataclasses.replace(held, runner=runner, job_id=job_id, expires_s=now + JOB_TTL_S, heartbeat_s=now,
                               pid=None if detached else held.pid,
                               pid_started=None if detached else held.pid_started)


def liveness(lease: Lease, job_finished: bool, now: float | None = None) -> tuple[bool, str]:
    """(live, why) of a lease; ``job_finished``: the output's stats are newer than the last launch."""
    now = time.time() if now is None else now
    if lease.pid is not None:
        if lease.host == socket.gethostname():
            if _pid_runs(lease.pid, lease.pid_started):
                return True, f"its launcher, pid {lease.pid}, is running"
        elif now - lease.heartbeat_s < LAUNCHER_TTL_S:
            return True, f"its launcher on {lease.host} renewed it {now - lease.heartbeat_s:.0f} s ago"
    if lease.job_id:
        if job_finished:
            return False, f"job {lease.job_id} has finished"
        if lease.expires_s is not None and now >= lease.expires_s:
            return False, f"the lease of job {lease.job_id} expired"
        return True, f"job {lease.job_id} has not finished"
    if lease.pid is not None and lease.host == socket.gethostname():
        return False, f"its launcher, pid {lease.pid} on {lease.host}, is gone"
    return False, f"its launcher on {lease.host} stopped renewing it"


def read(output_dir: str) -> Lease | None:
    """The output's lease, or None; an unreadable lease file counts as none (it is taken over)."""
    try:
        return Lease.from_json(storage.read_bytes(path(output_dir)))
    except Exception:  # noqa: BLE001 - missing, or not a lease (a torn write by a killed launcher)
        return None


def held_message(output_dir: str, lease: Lease, why: str) -> str:
    return (f"--output {output_dir} is in use: {lease.holder()} holds its lease ({why}); wait until it ends "
            f"(a detached job's: python -m pipeline finalize {output_dir}), or add --force-lease if it is gone")


def check_free(output_dir: str, job_finished: bool, force: bool = False) -> Lease | None:
    """Raise ``LeaseHeld`` if a live lease holds the output (unless ``force``); else the lease a taker would
    replace (None when there is none)."""
    current = read(output_dir)
    if current is None:
        return None
    live, why = liveness(current, job_finished)
    if live and not force:
        raise LeaseHeld(held_message(output_dir, current, why))
    return current


def _log_takeover(output_dir: str, previous: Lease | None, job_finished: bool, force: bool) -> None:
    if previous is None:
        return
    live, why = liveness(previous, job_finished)
    how = "--force-lease: taking over the live lease" if live and force else "taking over the lease"
    log.warning("%s of %s on %s (%s)", how, previous.holder(), output_dir, why)


@contextlib.contextmanager
def _directory_lock(directory: str) -> Iterator[None]:
    """An exclusive ``flock`` of the directory, between launchers on this machine (none where unsupported)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # a filesystem without flock: O_EXCL still decides
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def acquire(output_dir: str, mine: Lease, job_finished: bool, force: bool = False) -> Lease:
    """Take the output's lease for ``mine``: refused (``LeaseHeld``) while another live lease holds it
    unless ``force``; a gone holder's lease is taken over with a warning. Returns ``mine``."""
    if storage.is_local(output_dir):
        directory = storage.local_path(output_dir)
        os.makedirs(directory, exist_ok=True)
        with _directory_lock(directory):
            previous = check_free(output_dir, job_finished, force)
            _log_takeover(output_dir, previous, job_finished, force)
            target = storage.local_path(path(output_dir))
            if previous is not None or os.path.exists(target):  # a gone holder's, or an unreadable file
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(target)
            try:
                fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:  # another launcher created it between our verdict and our create
                raise LeaseHeld(held_message(output_dir, read(output_dir) or mine, "it was just taken")) from None
            with os.fdopen(fd, "wb") as out:
                out.write(mine.to_json())
        return mine
    previous = check_free(output_dir, job_finished, force)  # an object store: check, then write
    _log_takeover(output_dir, previous, job_finished, force)
    storage.write_bytes(path(output_dir), mine.to_json())
    now_held = read(output_dir)
    if now_held is None or now_held.token != mine.token:  # another launcher wrote after us
        raise LeaseHeld(held_message(output_dir, now_held or mine, "it was just taken"))
    return mine


@contextlib.contextmanager
def _held(output_dir: str) -> Iterator[None]:
    """The directory lock ``acquire`` takes, for a read-compare-write of a local lease (a renewal racing a
    takeover must not write the old lease back); nothing on an object store."""
    if storage.is_local(output_dir) and os.path.isdir(storage.local_path(output_dir)):
        with _directory_lock(storage.local_path(output_dir)):
            yield
    else:
        yield


def replace(output_dir: str, lease: Lease) -> bool:
    """Rewrite the output's lease as ``lease`` if it is still this taking's (same token): renewing it,
    handing it to a job. False when someone took it over meanwhile."""
    with _held(output_dir):
        current = read(output_dir)
        if current is None or current.token != lease.token:
            return False
        storage.write_bytes(path(output_dir), lease.to_json())
        return True


def release(output_dir: str, token: str | None = None) -> bool:
    """Delete the output's lease: only if it is ``token``'s, when given. True when one was deleted."""
    with _held(output_dir):
        current = read(output_dir)
        if not storage.exists(path(output_dir)) or (token is not None and (current is None or current.token != token)):
            return False
        storage.delete_quietly(path(output_dir))
        return True


class Heartbeat:
    """Renews a launcher's lease every ``HEARTBEAT_S`` in a daemon thread, while the lease is still its."""

    def __init__(self, output_dir: str, lease: Lease, every_s: float = HEARTBEAT_S):
        self.output_dir, self.lease, self.every_s = output_dir, lease, every_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def hand_over(self, lease: Lease) -> None:
        """Write ``lease`` (the same taking, now naming its job) and renew that from now on."""
        with self._lock:
            self.lease = lease
            replace(self.output_dir, lease)

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            with self._lock:
                if self.lease.pid is None:
                    return
                self.lease = dataclasses.replace(self.lease, heartbeat_s=time.time())
                try:
                    if not replace(self.output_dir, self.lease):
                        log.warning("the lease of %s was taken over by another launcher", self.output_dir)
                        return
                except Exception:  # noqa: BLE001 - a storage hiccup: the next beat tries again
                    log.warning("could not renew the lease of %s", self.output_dir, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
