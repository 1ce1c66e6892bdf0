"""How much of the test suite needs the benchmark data folder (``../shared`` or ``$SUPERRES_SHARED``).

Collects the whole suite without running it, with ``SUPERRES_SHARED`` pointing nowhere, and counts the
tests that use the ``data_dir`` or ``weights_dir`` fixture (directly or through another fixture): those
are the ones that skip without the folder. Prints the totals and the modules skipped whole.

    python benchmarks/shared_skips.py
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

NEEDS_SHARED = {"data_dir", "weights_dir"}


class _Count:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def pytest_collection_modifyitems(self, session: Any, config: Any, items: list[Any]) -> None:
        self.items = list(items)


def main() -> None:
    import pytest

    root = Path(__file__).resolve().parents[1]
    os.environ["SUPERRES_SHARED"] = str(root / "no-such-shared-folder")
    os.chdir(root)
    count = _Count()
    pytest.main(["--co", "-q", "-p", "no:cacheprovider", "tests"], plugins=[count])
    items = count.items
    need = [i for i in items if NEEDS_SHARED & set(i.fixturenames)]
    by_module = Counter(i.nodeid.split("::")[0] for i in items)
    skipped = Counter(i.nodeid.split("::")[0] for i in need)
    whole = sorted(m for m in skipped if skipped[m] == by_module[m])
    print(f"\n{len(need)} of {len(items)} tests ({100 * len(need) / max(1, len(items)):.1f} %) need the benchmark "
          f"data folder and skip without it; modules skipped whole: {', '.join(whole) or 'none'}")
    sys.exit(0)


if __name__ == "__main__":
    main()
