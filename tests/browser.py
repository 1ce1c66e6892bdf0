"""What the real-browser tests share: the system Chromium and the flags it needs on these machines (as root,
no GPU, a closed network: without the background-networking flags Chromium keeps trying to reach Google)."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
