"""The blind comparison study over HTTP (``superres serve --study DIR``): the rating page at ``/study``
and its API under ``/v1/study``.

Blindness: the page asks for a pair and gets a random token and three image URLs built from it
(``/v1/study/image/<token>/left|right|lr``); which model is behind a side is known only to the server
(the SQLite ``pairs`` table) and is never sent to the page, not even after the vote. Every image is
served as a fresh PNG (``study.unlinkable``), so equal bytes never tie two pairs to one model. Which pair
comes next balances the design: an (image, model, model) combination with the fewest votes so far,
picked at random among those, and the two sides swapped at random.

Who may do what: a rater is a server-issued secret token (``POST /v1/study/rater``, capped per study and
per client address); ``next`` and ``vote`` need it, a rater has at most one open pair (asking again
returns the same pair, so nobody can shop for pairs with a given model) and votes only on their own
pairs, up to the study's votes-per-rater cap. The vote export names the models, so it needs the study
owner's token (``owner.token`` in the study folder) as ``Authorization: Bearer``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import random
import re
from pathlib import Path
from typing import Any, Literal, Optional

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from .errors import ApiError, ErrorBody
from .routers.page import html_page

__all__ = ["register"]

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # also in the request models' schema


def _errors(*codes: int) -> dict[int | str, dict[str, object]]:
    words = {
        400: "Body is not JSON",
        401: "The study owner's token is missing or wrong",
        403: "Unknown rater token, or this rater's vote cap is reached",
        404: "Unknown pair or side",
        409: "Already voted, or another rater's pair",
        422: "Invalid input",
        429: "No more rater tokens for this study or this address",
    }
    return {c: {"model": ErrorBody, "description": words[c]} for c in codes}


class StudyInfo(BaseModel):
    title: str
    images: int
    models: int  # how many, never which
    show_lr: bool
    votes: int
    max_votes: int  # per rater


_TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_TOKEN_FIELD = "the rater token from POST /v1/study/rater"


class RaterOut(BaseModel):
    rater: str = Field(description="secret: send it with every next and vote; keep it (the page does)")
    id: str = Field(description="public id the votes and the report carry")
    max_votes: int


class NextRequest(BaseModel):
    rater: str = Field(pattern=_TOKEN_PATTERN, description=_TOKEN_FIELD)


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
    rater: str = Field(pattern=_TOKEN_PATTERN, description=_TOKEN_FIELD)


class VoteOut(BaseModel):
    ok: bool
    votes: int
    rater_votes: int
    max_votes: int


_RATER_STATUS = {"unknown_rater": 403, "vote_limit": 403, "not_yours": 409, "rater_limit": 429}


def _address(request: Request) -> str:
    """The client's address for the per-address rater cap; an IPv6 client counts as its /64 (one host
    usually holds a whole /64 and could otherwise rotate addresses at will)."""
    host = request.client.host if request.client else "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


def _bearer(request: Request) -> Optional[str]:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def register(app: FastAPI, study_dir: Path) -> None:
    """Mount the study page and API for the study in ``study_dir`` (refused at start when it is not one)."""
    from ..study.create import load_study
    from ..study.owner import is_owner, owner_token
    from ..study.store import RaterError, StudyError, VoteStore
    from ..study.unlinkable import fresh_png

    study = load_study(Path(study_dir))
    owner_token(study.root)  # an older study folder gets its owner token now
    store = VoteStore(study.root / "votes.sqlite")
    limits = study.limits

    def refused(e: RaterError) -> ApiError:
        return ApiError(_RATER_STATUS.get(e.kind, 403), e.kind, str(e))

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
            max_votes=limits.votes_per_rater,
        )

    @router.post("/v1/study/rater", status_code=201, response_model=RaterOut, responses=_errors(429))
    async def new_rater(request: Request) -> RaterOut:
        """A new rater: a secret token for this browser (the page stores it) and a public id. At most the
        study's cap of raters in all and per client address."""
        try:
            token, rid = await asyncio.to_thread(store.add_rater, _address(request), limits)
        except RaterError as e:
            raise refused(e) from None
        return RaterOut(rater=token, id=rid, max_votes=limits.votes_per_rater)

    def choose(token: str) -> PairOut:
        rater = store.rater(token)
        p = store.open_pair(rater)
        if p is None:
            if store.count(rater) >= limits.votes_per_rater:
                raise RaterError("vote_limit", f"this rater has cast the study's maximum of "
                                 f"{limits.votes_per_rater} votes; thank you")
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

    @router.post("/v1/study/next", response_model=PairOut, responses=_errors(400, 403, 422))
    async def next_pair(req: NextRequest) -> PairOut:
        """This rater's blind pair: a token and the URLs of its images (the same pair until it is voted)."""
        try:
            return await asyncio.to_thread(choose, req.rater)
        except RaterError as e:
            raise refused(e) from None

    @router.get(
        "/v1/study/image/{token}/{side}",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "The image."}, **_errors(404, 422)},
    )
    async def image(token: str, side: Literal["left", "right", "lr"]) -> Response:
        """One image of an issued pair (``left``, ``right`` or ``lr``), as a PNG made fresh for this
        request (its bytes differ from every other serve of the same output)."""
        try:
            p = await asyncio.to_thread(store.pair, token)
        except StudyError as e:
            raise ApiError(404, "unknown_pair", str(e)) from None
        path = (
            study.lr(p.image)
            if side == "lr"
            else study.output(p.left if side == "left" else p.right, p.image)
        )
        data = await asyncio.to_thread(fresh_png, path, rng)
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, no-store"})

    def cast_vote(v: VoteIn) -> Any:
        rater = store.rater(v.rater)
        return store.vote(v.pair, v.choice, v.ms, rater, max_votes=limits.votes_per_rater)

    @router.post("/v1/study/vote", response_model=VoteOut, responses=_errors(400, 403, 404, 409, 422))
    async def vote(v: VoteIn) -> VoteOut:
        """Record this rater's vote on the pair they were handed (once per pair, up to the study's cap)."""
        try:
            cast = await asyncio.to_thread(cast_vote, v)
        except RaterError as e:
            raise refused(e) from None
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
        return VoteOut(ok=True, votes=total, rater_votes=mine, max_votes=limits.votes_per_rater)

    @router.get(
        "/v1/study/votes.csv",
        response_class=Response,
        responses={200: {"content": {"text/csv": {}}, "description": "Every vote."}, **_errors(401)},
    )
    async def export(request: Request) -> Response:
        """Every vote as CSV (the same columns ``superres study import`` reads). The votes name the
        models, so only the study owner gets them: ``Authorization: Bearer <owner.token of the folder>``."""
        if not await asyncio.to_thread(is_owner, study.root, _bearer(request)):
            raise ApiError(
                401,
                "owner_only",
                "the vote export needs the study owner's token (Authorization: Bearer, from owner.token "
                "in the study folder), or use superres study export on the server",
                {"WWW-Authenticate": 'Bearer realm="study owner"'},
            )
        text = await asyncio.to_thread(store.export_csv)
        return Response(
            text, media_type="text/csv", headers={"Content-Disposition": 'attachment; filename="votes.csv"'}
        )

    app.include_router(router)
