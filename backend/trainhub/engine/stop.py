"""Graceful stop: SIGTERM or SIGINT asks the loop to finish its step, save and exit;
a second signal exits at once."""

from __future__ import annotations

import os
import signal
import sys

from trainhub.runners.base import EXIT_INTERRUPTED


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
            print("second stop signal: exiting now without saving", file=sys.stderr, flush=True)
            os._exit(EXIT_INTERRUPTED)
        self.requested = True
        print(f"{signal.Signals(signum).name}: finishing the current step, then saving a checkpoint",
              file=sys.stderr, flush=True)
