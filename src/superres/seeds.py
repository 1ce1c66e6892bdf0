"""One range for every random seed a user gives: ``0 <= seed <= 2**63 - 1``.

Why this bound: a seed is handed to ``torch.manual_seed`` / ``torch.Generator.manual_seed`` (which take
at most 2**64 - 1) and code derives further seeds from it (``seed + 1`` for a second generator), so a
seed of 2**64 ended in a traceback and one just below it in ``Overflow when unpacking long long`` halfway
through a job. Below 2**63 a seed fits a signed 64-bit integer (OpenAPI ``int64``, SQLite, JSON
readers), ``seed + k`` cannot overflow, and every seed that worked before still gives the same result.
2**32 would be tighter than torch needs and would change the results of runs made with larger seeds.

Standard library only: command modules import this at the top.
"""

from __future__ import annotations

from .errors import SuperresError

__all__ = ["MAX_SEED", "SEED_HELP", "check_seed", "derive_seed"]

#: The largest seed accepted anywhere (command line, server, configs).
MAX_SEED = 2**63 - 1
SEED_HELP = "Random seed, 0 to 2^63-1; the same seed gives the same result."


def check_seed(seed: int, flag: str = "--seed") -> int:
    """Return ``seed`` or raise a one-line :class:`SuperresError` naming ``flag`` and the range."""
    if not 0 <= seed <= MAX_SEED:
        raise SuperresError(f"{flag} must be between 0 and 2^63-1 ({MAX_SEED}), not {seed}")
    return seed


def derive_seed(value: int) -> int:
    """A seed computed from a user's seed (``seed * 1_000_003 + i``) brought back into range; equal to
    ``value`` whenever that is already in range, so existing results do not change."""
    return value % (MAX_SEED + 1)
