"""Tests for pipeline/failpoints.py: crash points are inert unless armed, and kill their process group at the
N-th pass when armed."""

from __future__ import annotations

import os
import subprocess
import sys

from pipeline.failpoints import ENV_VAR, armed, crash_point

SCRIPT = """
import sys
from pipeline.failpoints import crash_point
for n in range(3):
    crash_point("extract.unit_committed")
    print("passed", n, flush=True)
"""


def test_unarmed_crash_points_do_nothing(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    crash_point("before_publish")
    monkeypatch.setenv(ENV_VAR, "other.point")
    crash_point("before_publish")
    assert armed() == {"other.point": 1}


def test_armed_parsing(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "extract.unit_committed:3, before_publish")
    assert armed() == {"extract.unit_committed": 3, "before_publish": 1}


def test_an_armed_point_kills_the_process_group_on_its_nth_pass():
    env = {**os.environ, ENV_VAR: "extract.unit_committed:2"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60,
                          start_new_session=True)
    assert done.returncode == -9 and done.stdout.split("\n")[:-1] == ["passed 0"]
