"""The one wrapper that runs programs, and its one result shape."""

import sys

from saltext.eos.utils import commands


def test_a_program_that_runs_gives_its_status_and_output():
    done = commands.run([sys.executable, "-c", "import sys; print('out'); sys.exit(3)"])
    assert (done.returncode, done.stdout, done.error) == (3, "out\n", None)
    assert done.ok is False


def test_a_missing_program_is_127_with_a_reason_and_no_exception():
    done = commands.run(["eos-no-such-program-anywhere"])
    assert done.returncode == commands.MISSING_PROGRAM
    assert done.error == "eos-no-such-program-anywhere: command not found"
    assert done.detail() == done.error


def test_a_slow_program_is_124_with_a_reason():
    done = commands.run([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.2)
    assert done.returncode == commands.TIMED_OUT
    assert done.error.endswith("no answer in 0.2 s")


def test_the_environment_is_added_to_this_process_one():
    script = "import os; print(os.environ['LC_ALL'], 'PATH' in os.environ)"
    done = commands.run([sys.executable, "-c", script], env=commands.C_LOCALE)
    assert done.stdout.split() == ["C", "True"]


def test_via_salt_asks_cmd_run_all_without_a_shell_and_keeps_its_answer():
    asked = []

    def run_all(argv, **options):
        asked.append((argv, options))
        return {"retcode": 2, "stdout": "", "stderr": "mkfs.xfs: bad option\n", "pid": 7}

    run = commands.via_salt(run_all, output_loglevel="quiet")
    done = run(["mkfs.xfs", "-q", 5], timeout=30)
    assert asked == [
        (
            ["mkfs.xfs", "-q", "5"],
            {
                "python_shell": False,
                "ignore_retcode": True,
                "output_loglevel": "quiet",
                "timeout": 30,
            },
        )
    ]
    assert (done.returncode, done.detail()) == (2, "mkfs.xfs: bad option")
