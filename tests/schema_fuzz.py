"""Shared by test_serve_schema and test_study_schema: run schemathesis (its CLI: its pytest plugin does not
load under this pytest) against a live server's OpenAPI spec and require a clean run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Sequence


def schemathesis_args(examples: int) -> list[str]:
    """Every check except positive_data_acceptance: the spec can only say the file is binary, so
    schema-valid random bytes are (rightly) refused with 415, which that check counts as a failure.
    ``examples`` per operation and phase, seeded, one worker."""
    return ["--checks", "all", "--exclude-checks", "positive_data_acceptance", "-n", str(examples),
            "--seed", "1", "--workers", "1", "--request-timeout", "60", "--no-color"]


def run_schemathesis(url: str, cwd: Path, examples: int, extra: Sequence[str] = ()) -> str:
    """Coverage, fuzzing and stateful phases against ``url``/openapi.json; asserts exit 0, "No issues
    found" and every generated case passed. Returns the output's summary (printed too). ``extra``: more
    CLI arguments, e.g. ``["-H", "Authorization: Bearer ..."]``."""
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", url + "/openapi.json",
           *schemathesis_args(examples), *extra]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd,
                         env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    out = run.stdout + run.stderr
    summary = out[out.find("SUMMARY") :] if "SUMMARY" in out else out[-3000:]
    print(summary)
    assert run.returncode == 0, out[-6000:]
    assert "No issues found" in out and re.search(r"(\d+) generated, \1 passed", out), summary
    return summary
