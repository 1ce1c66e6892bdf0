"""The study's votes in SQLite (one file in the study folder), and their CSV import/export.

Every vote keeps who (rater id), what (image, the model shown left and right, the choice), how long the
rater looked (ms from both images shown to the key press, as the page measured it), how long the server
saw between handing out the pair and the vote (``served_ms``: what a script cannot shorten) and when.
A pair handed to a rater is recorded first under a random token; the vote names only the token, so the
page never learns which model is which, and a pair can be voted once (a resubmitted vote is refused,
not counted twice).

Raters are issued by the server (:meth:`VoteStore.add_rater`): a secret token (``secrets``, 128 bits)
that the page keeps and sends with every request, and a public random id (``r-1a2b3c4d``) that the votes, the
CSV and the report carry. Self-chosen ids are not accepted, so one client cannot become many raters
beyond the study's caps (raters per study, raters per client address), and votes per rater are capped.
"""

from __future__ import annotations

import csv
import io
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

from ..errors import SuperresError

__all__ = ["CHOICES", "CSV_COLUMNS", "Limits", "Pair", "RaterError", "Vote", "VoteStore", "StudyError"]

CHOICES = ("left", "right", "same")
CSV_COLUMNS = ("pair", "rater", "image", "left", "right", "choice", "ms", "timestamp")
OPTIONAL_COLUMNS = ("served_ms",)  # written by export; older CSVs without it still import

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pairs (
    token TEXT PRIMARY KEY, rater TEXT NOT NULL, image TEXT NOT NULL,
    left_model TEXT NOT NULL, right_model TEXT NOT NULL, issued REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, pair TEXT NOT NULL UNIQUE, rater TEXT NOT NULL,
    image TEXT NOT NULL, left_model TEXT NOT NULL, right_model TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'same')), ms INTEGER, ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS raters (
    token TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, address TEXT NOT NULL, created REAL NOT NULL
);
"""


class StudyError(SuperresError):
    """Bad study input: a broken manifest, an unknown pair, a malformed CSV row."""


class RaterError(StudyError):
    """A request a rater may not make: unknown token, another rater's pair, a cap reached.

    ``kind`` says which, for the HTTP layer's status: ``unknown_rater``, ``not_yours``, ``vote_limit``,
    ``rater_limit``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Limits:
    """The study's caps (stored in its manifest; ``superres study create --max-votes`` ...)."""

    votes_per_rater: int = 100
    raters: int = 500
    raters_per_address: int = 3


@dataclass(frozen=True)
class Pair:
    token: str
    rater: str
    image: str
    left: str
    right: str
    issued: float


@dataclass(frozen=True)
class Vote:
    pair: str
    rater: str
    image: str
    left: str
    right: str
    choice: str  # left | right | same
    ms: Optional[int]
    timestamp: float
    served_ms: Optional[int] = None  # server clock: pair handed out -> vote received

    @property
    def winner(self) -> Optional[str]:
        return {"left": self.left, "right": self.right}.get(self.choice)


class VoteStore:
    """Thread-safe access to ``votes.sqlite``; one short connection per call (SQLite serialises writers)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(votes)")}
            if "served_ms" not in columns:  # a votes.sqlite from before served_ms
                db.execute("ALTER TABLE votes ADD COLUMN served_ms INTEGER")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:  # one transaction: committed on success, rolled back on any error
                yield db
        finally:
            db.close()

    # ---- raters ----
    def add_rater(self, address: str, limits: Limits) -> tuple[str, str]:
        """A new rater for a client at ``address``: (secret token, public id); refused past the caps."""
        token = secrets.token_urlsafe(16)
        with self._lock, self._connect() as db:
            total = int(db.execute("SELECT COUNT(*) FROM raters").fetchone()[0])
            if total >= limits.raters:
                raise RaterError("rater_limit", f"this study has its maximum of {limits.raters} raters")
            mine = int(db.execute("SELECT COUNT(*) FROM raters WHERE address = ?", (address,)).fetchone()[0])
            if mine >= limits.raters_per_address:
                raise RaterError(
                    "rater_limit",
                    f"this address already has {limits.raters_per_address} rater token(s) for this study; "
                    "keep using the one your browser stored",
                )
            rater = f"r-{secrets.token_hex(4)}"  # random, so raters of merged studies (import) stay apart
            db.execute("INSERT INTO raters VALUES (?, ?, ?, ?)", (token, rater, address, time.time()))
        return token, rater

    def rater(self, token: Optional[str]) -> str:
        """The public id of the rater holding ``token``; :class:`RaterError` for anything else."""
        if not token:
            raise RaterError("unknown_rater", "a rater token is required; get one from POST /v1/study/rater")
        with self._connect() as db:
            row = db.execute("SELECT id FROM raters WHERE token = ?", (token,)).fetchone()
        if row is None:
            raise RaterError("unknown_rater", "unknown rater token; get one from POST /v1/study/rater")
        return str(row[0])

    def open_pair(self, rater: str) -> Optional[Pair]:
        """The pair this rater was handed and has not voted on yet (at most one is open at a time)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM pairs WHERE rater = ? AND token NOT IN (SELECT pair FROM votes) "
                "ORDER BY issued LIMIT 1",
                (rater,),
            ).fetchone()
        return None if row is None else Pair(*row)

    # ---- pairs and votes ----
    def issue(self, rater: str, image: str, left: str, right: str) -> Pair:
        pair = Pair(secrets.token_urlsafe(12), rater, image, left, right, time.time())
        with self._lock, self._connect() as db:
            db.execute(
                "INSERT INTO pairs VALUES (?, ?, ?, ?, ?, ?)",
                (pair.token, pair.rater, pair.image, pair.left, pair.right, pair.issued),
            )
        return pair

    def pair(self, token: str) -> Pair:
        with self._connect() as db:
            row = db.execute("SELECT * FROM pairs WHERE token = ?", (token,)).fetchone()
        if row is None:
            raise StudyError(f"unknown pair {token!r}")
        return Pair(*row)

    def vote(
        self, token: str, choice: str, ms: Optional[int], rater: str, *, max_votes: Optional[int] = None
    ) -> Vote:
        """Record ``rater``'s vote on the pair they were handed; refuses an unknown pair, another rater's
        pair, a bad choice, a second vote, and a vote past ``max_votes`` for this rater."""
        if choice not in CHOICES:
            raise StudyError(f"choice must be one of {', '.join(CHOICES)}, not {choice!r}")
        if ms is not None and not 0 <= int(ms) <= 86_400_000:
            raise StudyError(f"ms must be between 0 and 86400000, not {ms}")
        p = self.pair(token)
        if rater != p.rater:
            raise RaterError("not_yours", "this pair was handed to another rater")
        now = time.time()
        v = Vote(
            p.token,
            p.rater,
            p.image,
            p.left,
            p.right,
            choice,
            None if ms is None else int(ms),
            now,
            max(0, round((now - p.issued) * 1000)),
        )
        with self._lock, self._connect() as db:
            if max_votes is not None:
                cast = int(db.execute("SELECT COUNT(*) FROM votes WHERE rater = ?", (rater,)).fetchone()[0])
                if cast >= max_votes:
                    raise RaterError(
                        "vote_limit", f"this rater has cast the study's maximum of {max_votes} votes"
                    )
            try:
                self._insert(db, v)
            except sqlite3.IntegrityError:
                raise StudyError("this pair was already voted on") from None
        return v

    @staticmethod
    def _insert(db: sqlite3.Connection, v: Vote, ignore: bool = False) -> int:
        verb = "INSERT OR IGNORE" if ignore else "INSERT"
        cur = db.execute(
            f"{verb} INTO votes (pair, rater, image, left_model, right_model, choice, ms, ts, served_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (v.pair, v.rater, v.image, v.left, v.right, v.choice, v.ms, v.timestamp, v.served_ms),
        )
        return cur.rowcount

    def votes(self) -> list[Vote]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT pair, rater, image, left_model, right_model, choice, ms, ts, served_ms "
                "FROM votes ORDER BY id"
            ).fetchall()
        return [Vote(*r) for r in rows]

    def pair_counts(self) -> dict[tuple[str, str, str], int]:
        """Votes per (image, model, model) with the two models sorted: for balancing what to show next."""
        counts: dict[tuple[str, str, str], int] = {}
        with self._connect() as db:
            for image, a, b, n in db.execute(
                "SELECT image, left_model, right_model, COUNT(*) FROM votes "
                "GROUP BY image, left_model, right_model"
            ):
                x, y = sorted((a, b))
                counts[(image, x, y)] = counts.get((image, x, y), 0) + int(n)
        return counts

    def count(self, rater: Optional[str] = None) -> int:
        """Votes in all, or by one rater."""
        with self._connect() as db:
            if rater is None:
                return int(db.execute("SELECT COUNT(*) FROM votes").fetchone()[0])
            return int(db.execute("SELECT COUNT(*) FROM votes WHERE rater = ?", (rater,)).fetchone()[0])

    def __len__(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM votes").fetchone()[0])

    # ---- CSV ----
    def export_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_COLUMNS + OPTIONAL_COLUMNS)
        for v in self.votes():
            w.writerow(
                [
                    v.pair,
                    v.rater,
                    v.image,
                    v.left,
                    v.right,
                    v.choice,
                    "" if v.ms is None else v.ms,
                    repr(v.timestamp),
                    "" if v.served_ms is None else v.served_ms,
                ]
            )
        return buf.getvalue()

    def import_csv(
        self, text: str, *, models: Optional[Iterable[str]] = None, images: Optional[Iterable[str]] = None
    ) -> tuple[int, int]:
        """Add the votes of a CSV (as written by :meth:`export_csv`); returns (added, already present).

        All or nothing: any malformed row is a :class:`StudyError` naming its line, and nothing is added."""
        known_models = set(models) if models is not None else None
        known_images = set(images) if images is not None else None
        reader = csv.DictReader(io.StringIO(text))
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise StudyError(f"CSV lacks column(s) {', '.join(missing)} (expected {','.join(CSV_COLUMNS)})")
        parsed: list[Vote] = []
        for row in reader:
            line = reader.line_num
            try:
                ms = int(row["ms"]) if row["ms"] not in ("", None) else None
                ts = float(row["timestamp"])
                served = row.get("served_ms")
                served_ms = int(served) if served not in ("", None) else None
            except (TypeError, ValueError):
                raise StudyError(
                    f"CSV line {line}: ms and served_ms must be integers and timestamp a number"
                ) from None
            v = Vote(
                row["pair"] or "",
                row["rater"] or "",
                row["image"] or "",
                row["left"] or "",
                row["right"] or "",
                row["choice"] or "",
                ms,
                ts,
                served_ms,
            )
            if not all((v.pair, v.rater, v.image, v.left, v.right)):
                raise StudyError(f"CSV line {line}: pair, rater, image, left and right must not be empty")
            if v.choice not in CHOICES:
                raise StudyError(
                    f"CSV line {line}: choice must be one of {', '.join(CHOICES)}, not {v.choice!r}"
                )
            if v.left == v.right:
                raise StudyError(f"CSV line {line}: left and right are the same model {v.left!r}")
            if known_models is not None and not {v.left, v.right} <= known_models:
                unknown = sorted({v.left, v.right} - known_models)
                raise StudyError(f"CSV line {line}: model(s) {', '.join(unknown)} not in this study")
            if known_images is not None and v.image not in known_images:
                raise StudyError(f"CSV line {line}: image {v.image!r} not in this study")
            parsed.append(v)
        added = 0
        with self._lock, self._connect() as db:
            for v in parsed:
                added += self._insert(db, v, ignore=True)
        return added, len(parsed) - added
