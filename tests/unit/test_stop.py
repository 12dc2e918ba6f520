"""The stop flag: a repeated SIGTERM (the hub's parent-death signal can arrive twice) keeps the
save going; a second SIGINT exits at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent("""
    import os, signal, sys
    from trainhub.engine.stop import StopFlag
    flag = StopFlag.install()
    for name in sys.argv[1:]:
        os.kill(os.getpid(), getattr(signal, name))
    print("alive", flag.requested, flush=True)
""")


def run(*signals: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROGRAM, *signals], capture_output=True, text=True, timeout=60)


def test_one_sigterm_asks_for_a_stop():
    done = run("SIGTERM")
    assert done.returncode == 0 and done.stdout.strip() == "alive True"
    assert "finishing the current step" in done.stderr


def test_a_repeated_sigterm_does_not_abandon_the_save():
    done = run("SIGTERM", "SIGTERM", "SIGTERM")
    assert done.returncode == 0 and done.stdout.strip() == "alive True"
    assert "still saving" in done.stderr


def test_a_second_sigint_exits_at_once():
    done = run("SIGINT", "SIGINT")
    assert done.returncode == 130 and "alive" not in done.stdout
    assert "without saving" in done.stderr


def test_sigint_after_sigterm_exits_at_once():
    done = run("SIGTERM", "SIGINT")
    assert done.returncode == 130
