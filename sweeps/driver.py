"""What keeps one sweep's driver safe to stop and alone on its experiment.

- `DriverLock`: an OS lock (`flock`) on `<experiment>/.driver.lock` for the driver's lifetime. Two drivers on one
  experiment dir would interleave trials and corrupt each other's state; the second one is refused, naming the
  holder. The OS drops the lock when its process dies, even by `kill -9`, so `--resume` needs no cleanup.
- `Interrupts`: the first Ctrl-C asks Ray Tune to stop scheduling, save the experiment state and return (Tune's
  own stop signal, SIGUSR1); the driver then prints the exact `--resume` command and exits 130. A second Ctrl-C
  exits at once.
"""
from __future__ import annotations

import fcntl
import os
import shlex
import signal
import socket
import sys
from pathlib import Path

LOCK_FILE = ".driver.lock"
INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


class LockHeld(RuntimeError):
    """Another live driver holds the experiment; one line naming its PID and host."""


class DriverLock:
    def __init__(self, experiment_dir: Path):
        self.path = experiment_dir / LOCK_FILE
        self.fd: int | None = None

    def acquire(self, create: bool) -> bool:
        """Hold the lock until this process ends. `create=False` only locks an existing lock file (an experiment
        dir that is only checked must not gain one); returns whether a lock is held. Raises LockHeld."""
        try:
            fd = os.open(self.path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "a driver that did not say which"
            os.close(fd)
            raise LockHeld(f"{self.path.parent}: another driver is running this experiment ({holder}); wait for it, "
                           f"or stop it (Ctrl-C) and then --resume") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self.fd = fd  # kept open on purpose: closing it would release the lock
        return True


class Interrupts:
    """SIGINT handling for the driver's lifetime (install() before Ray starts)."""

    def __init__(self, resume_command: list[str]):
        self.resume_command = shlex.join(resume_command)
        self.count = 0
        self.tuning = False

    def install(self) -> None:
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Tune's handler would end the process on the second one
        signal.signal(signal.SIGINT, self.on_sigint)

    def on_sigint(self, signum, frame) -> None:
        self.count += 1
        tune_listens = signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN, None)
        if self.count == 1 and self.tuning and tune_listens:  # else nothing is running that needs saving
            print("\ninterrupted: stopping the sweep and saving its state (Ctrl-C again to quit at once)",
                  file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGUSR1)  # Ray Tune's stop signal: it checkpoints the experiment and returns
            return
        print(f"\ninterrupted; resume with: {self.resume_command}", file=sys.stderr, flush=True)
        os._exit(INTERRUPTED)

    @property
    def interrupted(self) -> bool:
        return self.count > 0
