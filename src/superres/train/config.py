"""Training recipes: a typed schema for the YAML files in ``configs/``, dotted overrides, path placeholders.

A recipe is read, merged with ``key.sub=value`` overrides from the command line, has its ``${data}``
placeholders replaced, and is then validated as a whole by pydantic with ``extra="forbid"``: a typo is an
error naming the key and the closest valid spelling, a wrong type names the key and what was expected. All
of this happens before a model is built or an image decoded, so a bad recipe costs nothing.

``${data}`` (alias ``${shared}``) is the data root: ``--data-root``, else ``$SUPERRES_DATA``, else
``../shared/data`` from the working directory (as ``superres eval``). ``${run}`` is the run folder.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import SuperresError
from ..seeds import MAX_SEED

__all__ = [
    "ConfigError",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "dump_config",
    "load_config",
    "parse_overrides",
]


class ConfigError(SuperresError):
    """A recipe that cannot be used as written (unknown key, wrong type, missing file)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(_Strict):
    """The generator: an architecture name from ``superres.archs`` and its constructor arguments."""

    arch: str
    hyperparams: dict[str, Any] = Field(default_factory=dict)
    # start from these weights instead of a random init (fine-tuning): a run folder (its newest EMA
    # weights), a weights file or a zoo name; a GAN stage uses gan.pretrained instead
    pretrained: str | None = None
    # "widen": the pretrained model is a narrower one of the same architecture (fewer channels per
    # layer); its filters are kept and the new ones start so that the network is still exactly the
    # pretrained function (see superres.train.trainer.widen_into). "transfer": tensors of the same name
    # and shape are loaded, the rest (e.g. the output layer of another scale) start random, as FSRCNN's
    # authors moved a x3 model to x2 and x4
    pretrained_mode: Literal["exact", "widen", "transfer"] = "exact"


class TrainSet(_Strict):
    """One training folder. ``lr`` given: a paired set (LR files on disk); else LR is made from HR."""

    hr: str
    lr: str | None = None


class Degradation(_Strict):
    """How LR is made from HR for HR-only sets: ``bicubic`` (MATLAB, per sample), or a batch pipeline
    (classical, realesrgan, bsrgan) applied in the training step."""

    name: str = "bicubic"
    params: dict[str, Any] = Field(default_factory=dict)


class DataSection(_Strict):
    scale: int = Field(ge=1, le=16)
    train: list[TrainSet] = Field(min_length=1)
    patch_size: int = Field(48, ge=4, description="LR patch side in pixels; the HR patch is patch_size * scale")
    degradation: Degradation = Field(default_factory=Degradation)
    augment: bool = True
    workers: int = Field(0, ge=0)
    color: Literal["auto", "rgb", "y"] = "auto"  # auto: Y for 1-channel networks (SRCNN & co), else RGB
    # HR-only sets: an image smaller than the HR crop is an error, or is left out (counted in the log)
    small_images: Literal["error", "skip"] = "error"


class LossTerm(_Strict):
    name: str
    weight: float = 1.0
    params: dict[str, Any] = Field(default_factory=dict)


class OptimSection(_Strict):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = 0.9  # sgd only


class ScheduleSection(_Strict):
    """Learning-rate factor over iterations: linear warm-up, then constant, cosine or multi-step decay."""

    name: Literal["constant", "cosine", "multistep"] = "constant"
    warmup_iters: int = Field(0, ge=0)
    milestones: list[int] = Field(default_factory=list)  # multistep: iterations where lr *= gamma
    gamma: float = Field(0.5, gt=0)
    min_lr: float = Field(0.0, ge=0)  # cosine: final learning rate (absolute)


class TrainSection(_Strict):
    iterations: int = Field(ge=1)
    batch_size: int = Field(16, ge=1, description="global batch: split evenly over DDP processes")
    ema_decay: float = Field(0.999, ge=0, lt=1)  # 0 = no EMA copy
    grad_clip: float = Field(0.0, ge=0)  # max global grad norm; 0 = off
    amp: Literal["none", "bf16", "fp16"] = "none"  # mixed precision, CUDA only (ignored on CPU)
    seed: int = Field(0, ge=0, le=MAX_SEED)  # superres.seeds: one range everywhere
    checkpoint_every: int = Field(1000, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    val_every: int = Field(1000, ge=0)  # 0 = only at the end
    log_every: int = Field(50, ge=1)
    max_time: float | None = Field(None, gt=0)  # seconds of wall clock for this invocation
    device: str = "auto"
    threads: int | None = Field(None, ge=1)  # torch CPU threads per process


class ValSection(_Strict):
    dataset: str | None = "Set5"  # a benchmark name under the data root, a folder, or null for none
    scale: int | None = None  # default: data.scale
    limit: int | None = Field(None, ge=1)
    root: str | None = None  # where named sets live; load_config fills in the data root


class GanSection(_Strict):
    """Stage 2 of a two-stage recipe: adversarial fine-tuning of a pretrained generator."""

    pretrained: str | None = None  # a run folder (its EMA or plain weights) or a .safetensors file
    discriminator: str = "unet_sn"  # vgg_style or unet_sn (superres.train.discriminators)
    discriminator_params: dict[str, Any] = Field(default_factory=dict)
    gan_type: str = "vanilla"
    weight: float = Field(0.1, ge=0)
    d_optim: OptimSection = Field(default_factory=lambda: OptimSection(lr=1e-4))
    d_steps: int = Field(1, ge=1)


class TrainConfig(_Strict):
    name: str = "run"
    description: str = ""
    model: ModelSection
    data: DataSection
    loss: list[LossTerm] = Field(default_factory=lambda: [LossTerm(name="l1")], min_length=1)
    optim: OptimSection = Field(default_factory=OptimSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    train: TrainSection
    val: ValSection = Field(default_factory=ValSection)
    gan: GanSection | None = None

    @field_validator("loss", mode="before")
    @classmethod
    def _loss_shorthand(cls, v: Any) -> Any:
        """``loss: l1`` means one term with weight 1."""
        return [{"name": v}] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        hp_scale = self.model.hyperparams.get("scale")
        if hp_scale is not None and int(hp_scale) != self.data.scale:
            raise ValueError(f"model.hyperparams.scale ({hp_scale}) differs from data.scale ({self.data.scale})")
        if any(t.name.lower() == "gan" for t in self.loss):
            raise ValueError("the adversarial loss is configured in the 'gan' section (gan_type, weight), "
                             "not in 'loss'")
        if self.model.pretrained and self.gan is not None and self.gan.pretrained:
            raise ValueError("give the starting weights once: model.pretrained or gan.pretrained, not both")
        for m in self.schedule.milestones:
            if m < 1:
                raise ValueError(f"schedule.milestones must be positive iterations, got {m}")
        return self


# ---- reading ---------------------------------------------------------------------------------------------


def parse_overrides(items: list[str]) -> list[tuple[list[str], Any]]:
    """``["train.batch_size=8", "loss.0.weight=0.5"]`` -> ``[(["train", "batch_size"], 8), ...]``.

    Values are YAML scalars or flow collections (``8``, ``1e-4``, ``true``, ``null``, ``[1, 2]``)."""
    import yaml

    out = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} is not of the form section.key=value (e.g. train.batch_size=8)")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({_first_line(e)})") from None
        out.append((key.split("."), _numbers(value)))
    return out


_SCI = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _numbers(obj: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; every config value that looks like one is a float."""
    if isinstance(obj, str) and _SCI.match(obj.strip()):
        return float(obj)
    if isinstance(obj, dict):
        return {k: _numbers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_numbers(v) for v in obj]
    return obj


def apply_overrides(data: dict[str, Any], overrides: list[tuple[list[str], Any]]) -> dict[str, Any]:
    """Set each dotted key in a copy of ``data``, creating sections as needed (unknown keys are then
    reported by the schema, with a suggestion); a numeric part indexes a list (``loss.0.weight``)."""
    import copy

    out = copy.deepcopy(data)
    for path, value in overrides:
        node: Any = out
        for i, part in enumerate(path):
            last = i == len(path) - 1
            where = ".".join(path[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"override {'.'.join(path)}: '{where}' needs an index below {len(node)}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    if not isinstance(node.get(part), (dict, list)):
                        node[part] = {}
                    node = node[part]
            else:
                raise ConfigError(f"override {'.'.join(path)}: '{'.'.join(path[:i])}' is a value, not a section")
    return out


_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def _substitute(obj: Any, values: dict[str, str]) -> Any:
    if isinstance(obj, str):
        def repl(m: re.Match[str]) -> str:
            key = m.group(1)
            if key not in values:
                raise ConfigError(f"unknown placeholder ${{{key}}} in {obj!r}; known: "
                                  + ", ".join("${" + k + "}" for k in sorted(values)))
            return values[key]

        return _PLACEHOLDER.sub(repl, obj)
    if isinstance(obj, dict):
        return {k: _substitute(v, values) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_substitute(v, values) for v in obj]
    return obj


def default_data_root(data_root: str | os.PathLike[str] | None = None) -> Path:
    """``--data-root``, else ``$SUPERRES_DATA``, else ``../shared/data`` (as the evaluation commands)."""
    if data_root is not None:
        return Path(data_root).expanduser().resolve()
    from ..data.catalogue import default_data_root as eval_root

    return eval_root().expanduser().resolve()


def config_from_dict(data: Any, *, source: str = "<config>") -> TrainConfig:
    """Validate a plain dict; errors name every bad key (with a suggestion for typos) in one message."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (model, data, train, ...), "
                          f"got {type(data).__name__}")
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: " + "; ".join(_describe(err) for err in e.errors())) from None


def load_config(
    path: str | os.PathLike[str],
    overrides: list[str] | None = None,
    *,
    data_root: str | os.PathLike[str] | None = None,
) -> TrainConfig:
    """Read a recipe, apply ``key=value`` overrides, substitute ``${data}``, validate."""
    import yaml

    p = Path(path)
    if not p.is_file():
        hint = ""
        configs = Path("configs")
        if configs.is_dir():
            names = [c.name for c in configs.glob("*.yaml")]
            close = difflib.get_close_matches(p.name, names, n=1)
            if close:
                hint = f"; did you mean configs/{close[0]}?"
        raise ConfigError(f"config file not found: '{p}'{hint}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"'{p}' is not valid YAML: {_first_line(e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"'{p}': expected a mapping of sections, got {type(data).__name__}")
    data = apply_overrides(_numbers(data), parse_overrides(overrides or []))
    root = str(default_data_root(data_root))
    data = _substitute(data, {"data": root, "shared": root})
    data.setdefault("name", p.stem)
    val = data.setdefault("val", {})
    if isinstance(val, dict) and val.get("root") is None:
        val["root"] = root
    return config_from_dict(data, source=str(p))


def dump_config(cfg: TrainConfig) -> str:
    """The resolved recipe as YAML (what a run actually used; loadable by :func:`load_config`)."""
    import yaml

    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, default_flow_style=None)


# ---- error messages --------------------------------------------------------------------------------------


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _fields_at(loc: tuple[Any, ...]) -> list[str] | None:
    """Valid keys of the section at ``loc`` (a pydantic error location), for suggestions."""
    from typing import get_args, get_origin

    model: Any = TrainConfig
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        f = model.model_fields.get(str(part))
        if f is None:
            return None
        ann = f.annotation
        # unwrap Optional[X] / list[X]
        for _ in range(3):
            if get_origin(ann) in (Union, list) or str(get_origin(ann)) == "types.UnionType":
                args = [a for a in get_args(ann) if a is not type(None)]
                ann = args[0] if args else ann
        model = ann
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return None


def _describe(err: dict[str, Any]) -> str:
    loc = tuple(err.get("loc", ()))
    key = ".".join(str(p) for p in loc) or "<top>"
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        valid = _fields_at(loc[:-1]) or []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
        parent = ".".join(str(p) for p in loc[:-1])
        section = f"in '{parent}'" if parent else "at the top level"
        hint = f"; did you mean '{close[0]}'?" if close else (f"; valid keys: {', '.join(valid)}" if valid else "")
        return f"unknown key '{key}' {section}{hint}"
    if kind == "missing":
        return f"'{key}' is required"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if "input" in err and kind not in ("value_error",):
        return f"'{key}': {msg} (got {err['input']!r})"
    return f"'{key}': {msg}" if loc else msg
