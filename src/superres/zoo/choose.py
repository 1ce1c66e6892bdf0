"""Pick the zoo model that serves a request natively: the family member of the asked scale and denoise level.

Why: running an x4 network and shrinking its output for a 2x request does four times the work of an x2
network and is no sharper; a denoise level is either a separate set of weights (Real-CUGAN, waifu2x) or
an input of the same weights (SRMD's noise map). Cards of one ``family`` differ only in scale and level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelLoadError
from .guide import PICKS
from .guide import pick as guide_pick
from .guide import picked_names
from .registry import ModelCard, all_cards, get_card, is_available_offline

# The most faithful (highest Y-PSNR on Set5 + Set14 + BSD100 with bicubic LR, `superres eval`) native model
# per scale; ``-m fidelity`` picks from here, ``-m fast`` from PICKS["fast"] (zoo.guide, with the reasons).
FIDELITY = PICKS["fidelity"]
FIDELITY_NAME = "fidelity"


@dataclass(frozen=True)
class Choice:
    """The model to load and the hyper-parameters that differ from its card (SRMD's ``noise_level``)."""

    model: str
    hyperparams: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # why another model than the one asked for, in words (empty: as asked)


def family_members(family: str) -> list[ModelCard]:
    return [c for c in all_cards() if family and c.family == family]


def levels_of(card: ModelCard) -> list[int]:
    """Denoise levels the card's family offers at the card's scale."""
    out = set(card.denoise_levels)
    for c in family_members(card.family):
        if c.scale == card.scale:
            out.update(c.denoise_levels)
            if c.denoise is not None:
                out.add(c.denoise)
    return sorted(out)


def _serves(card: ModelCard, denoise: int | None) -> bool:
    return denoise is None or denoise == card.denoise or denoise in card.denoise_levels


def choose(model: str, outscale: float | None = None, denoise: int | None = None) -> Choice:
    """The model for ``model`` asked at ``outscale`` (None: its own) with denoise level ``denoise``.

    A weights file or a card without a family is returned as asked (a denoise level is then an error).
    Within a family, a member whose scale equals an integer ``outscale`` wins over the asked card.
    """
    model = guide_pick(model, outscale) or model  # -m fidelity / -m fast: the pick for the scale
    try:
        card = get_card(model)
    except ModelLoadError:
        if denoise is not None:
            raise ModelLoadError(f"--denoise needs a zoo model with denoise levels; {model!r} is not one") from None
        return Choice(model)
    want = card.scale
    if outscale is not None and float(outscale).is_integer() and int(outscale) >= 1:  # 1: waifu2x-cunet-x1
        want = int(outscale)
    candidates = [card] + [c for c in family_members(card.family) if c.name != card.name]
    native = [c for c in candidates if c.scale == want and _serves(c, denoise)]
    if denoise is None:  # another scale keeps the asked card's own level where the family has it
        native.sort(key=lambda c: c.denoise != card.denoise)
    pick = native[0] if native else card
    if not _serves(pick, denoise):
        same_scale = [c for c in candidates if c.scale == pick.scale and _serves(c, denoise)]
        if not same_scale:
            levels = levels_of(card)
            offered = f"levels {', '.join(map(str, levels))}" if levels else "no denoise levels"
            raise ModelLoadError(f"{card.name!r} offers {offered}; --denoise {denoise} is not one of them")
        pick = same_scale[0]
    hp: dict[str, Any] = {}
    if denoise is not None and denoise in pick.denoise_levels and denoise != pick.hyperparams.get("noise_level"):
        hp["noise_level"] = denoise
    note = ""
    if pick.name != card.name:
        why = f"native x{pick.scale}" if pick.scale != card.scale else f"denoise level {denoise}"
        note = f"using {pick.name} ({why}) instead of {card.name}"
    picked = card if pick.name == card.name else get_card(pick.name)
    if picked.research_only:
        terms = f"{picked.name}'s weights are for research use only (upstream's terms; superres models --wide)"
        note = f"{note}; {terms}" if note else f"note: {terms}"
    return Choice(pick.name, hp, note)


def served_by_default() -> list[str]:
    """What ``superres serve`` serves unasked: the guide's picks (``zoo.guide.picked_names``: the shared
    default first, so it answers requests that name no model), only those available offline, and none a stranger's upload could turn
    against the server or its owner: weights for research use only (SRMD), and models that run whole images
    (Real-CUGAN, waifu2x CUNet: their SE gates see the whole picture, so memory grows with the upload instead
    of staying at one tile's). Loading all 58 cards would take minutes; any card is served when named with
    ``--models``."""
    from ..archs import build

    cards = [get_card(n) for n in picked_names()]
    return [c.name for c in cards if not c.research_only and is_available_offline(c)
            and build(c.arch, **c.hyperparams).descriptor.tiling != "internal"]
