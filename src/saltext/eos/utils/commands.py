"""
Running a program: one wrapper, one result shape.

Loader modules on a minion run programs through Salt's ``cmd.run_all`` (``via_salt``), so that
Salt logs them and its settings apply. ``run`` is the same call without Salt, for what runs
outside a loader: the default worlds of the utils, the bootstrap's ``salt-call``, tests.

Both give a ``CommandResult``; neither raises for a program that is missing or too slow:
``error`` says why it did not run or finish, with the shell's exit codes (127, 124).
"""

import os
import subprocess
from dataclasses import dataclass

MISSING_PROGRAM = 127
TIMED_OUT = 124
# Programs whose output is parsed must speak the same language on every node.
C_LOCALE = {"LC_ALL": "C"}


@dataclass(frozen=True)
class CommandResult:
    """What a program did: its exit status and output, or why it did not run or finish."""

    returncode: int
    stdout: str = ""
    stderr: str = ""
    error: str | None = None

    @property
    def ok(self):
        """True when the program ran and exited 0."""
        return self.error is None and self.returncode == 0

    def detail(self, limit=500):
        """The end of what the program said (stderr, else stdout), or why it did not run."""
        if self.error is not None:
            return self.error
        return (self.stderr or self.stdout).strip()[-limit:]


def run(argv, timeout=None, env=None):
    """Run ``argv`` without a shell, with ``env`` added to this process's environment."""
    argv = [str(part) for part in argv]
    name = os.path.basename(argv[0]) if argv else "(nothing)"
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **env} if env else None,
        )
    except FileNotFoundError:
        return CommandResult(MISSING_PROGRAM, error=f"{name}: command not found")
    except subprocess.TimeoutExpired:
        return CommandResult(TIMED_OUT, error=f"{name}: no answer in {timeout:g} s")
    except OSError as err:
        return CommandResult(MISSING_PROGRAM, error=f"{name}: {err.strerror or err}")
    return CommandResult(done.returncode, done.stdout, done.stderr)


def via_salt(run_all, **options):
    """
    A ``run`` that goes through Salt's ``cmd.run_all`` (``__salt__["cmd.run_all"]``), with
    ``options`` passed on to it (``output_loglevel``, ``timeout``...).
    """

    def run_through_salt(argv, timeout=None, env=None):
        extra = dict(options)
        if timeout is not None:
            extra["timeout"] = timeout
        if env:
            extra["env"] = env
        answer = run_all(
            [str(part) for part in argv], python_shell=False, ignore_retcode=True, **extra
        )
        return from_run_all(answer)

    return run_through_salt


def from_run_all(answer):
    """The CommandResult of Salt's ``cmd.run_all`` answer (``{retcode, stdout, stderr}``)."""
    return CommandResult(
        int(answer.get("retcode", 0) or 0), answer.get("stdout") or "", answer.get("stderr") or ""
    )
