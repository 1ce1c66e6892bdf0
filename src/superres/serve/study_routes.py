"""The blind comparison study over HTTP (``superres serve --study DIR``): the rating page at ``/study``
and its API under ``/v1/study``.

Blindness: the page asks for a pair and gets a random token and three image URLs built from it
(``/v1/study/image/<token>/left|right|lr``); which model is behind a side is known only to the server
(the SQLite ``pairs`` table) and is never sent to the page, not even after the vote. Which pair comes
next balances the design: an (image, model, model) combination with the fewest votes so far, picked at
random among those, and the two sides swapped at random.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
from pathlib import Path
from typing import Literal, Optional

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from .errors import ApiError, ErrorBody
from .routers.page import html_page

__all__ = ["register"]

_RATER = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # also in the request models' schema


def _errors(*codes: int) -> dict[int | str, dict[str, object]]:
    words = {
        400: "Body is not JSON",
        404: "Unknown pair or side",
        409: "Already voted, or another rater's pair",
        422: "Invalid input",
    }
    return {c: {"model": ErrorBody, "description": words[c]} for c in codes}


class StudyInfo(BaseModel):
    title: str
    images: int
    models: int  # how many, never which
    show_lr: bool
    votes: int


_RATER_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


class NextRequest(BaseModel):
    rater: str = Field(pattern=_RATER_PATTERN)


class PairOut(BaseModel):
    pair: str
    left: str
    right: str
    lr: Optional[str] = None


class VoteIn(BaseModel):
    pair: str
    choice: Literal["left", "right", "same"]
    ms: Optional[int] = Field(
        None, ge=0, le=86_400_000, description="milliseconds from both images shown to the choice"
    )
    rater: Optional[str] = Field(None, pattern=_RATER_PATTERN)


class VoteOut(BaseModel):
    ok: bool
    votes: int
    rater_votes: int


def _rater(text: str) -> str:
    if not _RATER.match(text or ""):
        raise ApiError(422, "invalid_rater", "rater id must be 1-64 letters, digits, '.', '_' or '-'")
    return text


def register(app: FastAPI, study_dir: Path) -> None:
    """Mount the study page and API for the study in ``study_dir`` (refused at start when it is not one)."""
    from ..study.create import load_study
    from ..study.store import StudyError, VoteStore

    study = load_study(Path(study_dir))
    store = VoteStore(study.root / "votes.sqlite")
    combos = [(img, a, b) for img in study.images for a, b in itertools.combinations(sorted(study.models), 2)]
    rng = random.SystemRandom()
    router = APIRouter(tags=["study"])

    @router.get("/study", include_in_schema=False)
    async def page() -> FileResponse:
        return html_page("study.html")

    @router.get("/v1/study", response_model=StudyInfo)
    async def info() -> StudyInfo:
        """The study's title and size (the number of models, not their names)."""
        n = await asyncio.to_thread(len, store)
        return StudyInfo(
            title=study.title,
            images=len(study.images),
            models=len(study.models),
            show_lr=study.show_lr,
            votes=n,
        )

    def choose(rater: str) -> PairOut:
        counts = store.pair_counts()
        least = min(counts.get(c, 0) for c in combos)
        image, a, b = rng.choice([c for c in combos if counts.get(c, 0) == least])
        if rng.random() < 0.5:
            a, b = b, a
        p = store.issue(rater, image, a, b)
        base = f"/v1/study/image/{p.token}"
        return PairOut(
            pair=p.token,
            left=f"{base}/left",
            right=f"{base}/right",
            lr=f"{base}/lr" if study.show_lr else None,
        )

    @router.post("/v1/study/next", response_model=PairOut, responses=_errors(400, 422))
    async def next_pair(req: NextRequest) -> PairOut:
        """A new blind pair for this rater: a token and the URLs of its images."""
        return await asyncio.to_thread(choose, _rater(req.rater))

    @router.get(
        "/v1/study/image/{token}/{side}",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "The image."}, **_errors(404)},
    )
    async def image(token: str, side: str) -> FileResponse:
        """One image of an issued pair (``left``, ``right`` or ``lr``)."""
        if side not in ("left", "right", "lr"):
            raise ApiError(404, "not_found", "side must be left, right or lr")
        try:
            p = await asyncio.to_thread(store.pair, token)
        except StudyError as e:
            raise ApiError(404, "unknown_pair", str(e)) from None
        path = (
            study.lr(p.image)
            if side == "lr"
            else study.output(p.left if side == "left" else p.right, p.image)
        )
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, no-store"})

    @router.post("/v1/study/vote", response_model=VoteOut, responses=_errors(400, 404, 409, 422))
    async def vote(v: VoteIn) -> VoteOut:
        """Record a vote on an issued pair (once per pair)."""
        if v.rater is not None:
            _rater(v.rater)
        try:
            cast = await asyncio.to_thread(store.vote, v.pair, v.choice, v.ms, v.rater)
        except StudyError as e:
            text = str(e)
            status = (
                404
                if text.startswith("unknown pair")
                else 409
                if "already" in text or "another" in text
                else 422
            )
            raise ApiError(status, "bad_vote", text) from None
        total = await asyncio.to_thread(store.count)
        mine = await asyncio.to_thread(store.count, cast.rater)
        return VoteOut(ok=True, votes=total, rater_votes=mine)

    @router.get(
        "/v1/study/votes.csv",
        response_class=Response,
        responses={200: {"content": {"text/csv": {}}, "description": "Every vote."}},
    )
    async def export() -> Response:
        """Every vote as CSV (the same columns ``superres study import`` reads)."""
        text = await asyncio.to_thread(store.export_csv)
        return Response(
            text, media_type="text/csv", headers={"Content-Disposition": 'attachment; filename="votes.csv"'}
        )

    app.include_router(router)
