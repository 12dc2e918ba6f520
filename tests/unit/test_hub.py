"""How the hub starts a backend's child process."""

from __future__ import annotations

import json
import os
import sys

import pytest

from trainhub.hub import _follow
from trainhub.progress import View
from trainhub.runners.base import Launch

CHILD = """
import json, os, sys
json.dump({"pid": os.getpid(), "pgid": os.getpgid(0), "sid": os.getsid(0), "stdin": sys.stdin.read()},
          open(sys.argv[1], "w"))
"""


@pytest.mark.skipif(not hasattr(os, "getsid"), reason="POSIX process groups")
def test_the_child_has_a_process_group_of_its_own_in_the_hubs_session(tmp_path):
    """Its own group: the terminal's Ctrl-C goes to the foreground group (the hub's), and the hub forwards
    it as SIGTERM. The hub's session: a session of its own would put the child in another CPU autogroup,
    measured slower (hub._detach). Its stdin is empty: a background group reading the terminal would stop."""
    out = tmp_path / "ids.json"
    launch = Launch(argv=[sys.executable, "-c", CHILD, str(out)], cwd=tmp_path)
    _follow(launch, tmp_path, "run0", View("none"))  # no end row: the hub writes a failed one, not checked here
    ids = json.loads(out.read_text())
    assert ids["pgid"] == ids["pid"] != os.getpgid(0)
    assert ids["sid"] == os.getsid(0)
    assert ids["stdin"] == ""
