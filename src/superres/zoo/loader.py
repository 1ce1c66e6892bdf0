"""A zoo name or a weights file -> a network with its weights: the bottom of every loading path.

Why here: loading is a zoo matter (cards, weight sources, file formats, architecture detection); the
upscaling pipeline (:mod:`superres.inference`) takes a built network and never loads files itself, and the
runtime backends (:mod:`superres.deploy.runtime`) start from the same network. Architecture and
hyper-parameters come from the card for zoo names, else from the file's own metadata (files this project
writes name their ``arch`` and ``hyperparams``), else are detected from key names and tensor shapes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..archs.base import SRNet, detect, get_arch, list_archs
from ..errors import ModelLoadError
from .licences import check_licence
from .weight_limits import build_within_limits, check_state_dict

if TYPE_CHECKING:  # pragma: no cover
    from .registry import ModelCard

__all__ = ["load_network", "looks_like_file"]


def looks_like_file(text: str) -> bool:
    """A weights file rather than a zoo name: a known weights suffix, an existing file, or a path separator (a
    folder that happens to share a zoo name, e.g. ``./liif/`` of outputs, does not hide the model)."""
    from .formats import WEIGHT_SUFFIXES

    p = Path(text).expanduser()
    return p.suffix.lower() in WEIGHT_SUFFIXES or p.is_file() or "/" in text or "\\" in text


def load_network(name_or_path: str | Path, *, allow_download: bool = False,
                 hyperparams: dict[str, Any] | None = None) -> tuple[SRNet, "ModelCard | None"]:
    """A zoo name or a weights file -> (network with weights, its card or None). ``hyperparams`` override
    ones that are not in the weights (SRMD's ``noise_level``, chosen by :func:`superres.zoo.choose.choose`)."""
    from .formats import read_weights_file
    from .registry import get_card, resolve_weights

    text = str(name_or_path)
    p = Path(text).expanduser()
    card = None
    if looks_like_file(text):
        if not p.exists():
            raise ModelLoadError(f"weights file not found: '{p}'")
        path = p
    else:
        card = get_card(text)
        path = resolve_weights(card, allow_download=allow_download)
    sd, meta = read_weights_file(path)
    found = detect(sd)
    if card is not None:
        arch, hp = card.arch, dict(card.hyperparams)
        if found is None or found[0] != arch:
            raise ModelLoadError(f"weights at '{path}' are not a {arch} network as {card.name!r} expects")
    elif found is None:
        raise ModelLoadError(
            f"'{path}' matches no known architecture (expected weights of: {', '.join(list_archs())})"
        )
    else:
        arch, hp = _from_metadata(meta, found)
    hp.update(hyperparams or {})
    check_licence(get_arch(arch))  # before anything is built: a refused licence allocates nothing
    check_state_dict(sd, path)  # every reader's output, ncnn conversions included
    net = build_within_limits(arch, hp, sd, path)  # meta-device dry run first: nothing allocated if too big
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ModelLoadError(f"weights at '{path}' do not fit {arch} {hp}: {first}") from None
    return net, card


def _from_metadata(meta: dict[str, str], found: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Shapes cannot tell everything (an ESPCN's activation, an SRCNN's scale): files this project writes
    name their ``arch`` and ``hyperparams`` in the safetensors metadata, which then wins over detection."""
    arch, hp = found
    if meta.get("arch") == arch and meta.get("hyperparams"):
        try:
            stated = json.loads(meta["hyperparams"])
        except ValueError:
            return found
        if isinstance(stated, dict):
            hp = {**hp, **stated}
    return arch, hp
