"""Graceful stop: SIGTERM or SIGINT asks the loop to finish its step, save and exit.

A second SIGINT exits at once, without saving. A second SIGTERM does not: Linux can deliver the
hub's parent-death SIGTERM twice (once per hub thread that exits while the child is reparented),
and a duplicate must not throw away the checkpoint being saved. SIGKILL is the hard stop.
"""

from __future__ import annotations

import os
import signal
import sys

from trainhub.child import EXIT_INTERRUPTED


class StopFlag:
    def __init__(self) -> None:
        self.requested = False

    @classmethod
    def install(cls) -> StopFlag:
        flag = cls()
        signal.signal(signal.SIGTERM, flag._handle)
        signal.signal(signal.SIGINT, flag._handle)
        return flag

    def _handle(self, signum: int, _frame) -> None:
        if self.requested:
            if signum == signal.SIGINT:
                print("second interrupt: exiting now without saving", file=sys.stderr, flush=True)
                os._exit(EXIT_INTERRUPTED)
            print("SIGTERM again: still saving (SIGINT or SIGKILL stops at once)", file=sys.stderr, flush=True)
            return
        self.requested = True
        print(f"{signal.Signals(signum).name}: finishing the current step, then saving a checkpoint",
              file=sys.stderr, flush=True)
