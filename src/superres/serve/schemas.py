"""Response models and OpenAPI fragments of the HTTP API (documented in its spec)."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel

from .errors import ErrorBody
from .pipeline import CONTENT_TYPES, MAX_OUTSCALE, MAX_SIDE

__all__ = ["IMAGE_RESPONSE", "JOB_RESULT_RESPONSE", "Health", "JobInfo", "ModelInfo", "ModelList", "Ready",
           "errors", "upload_body"]


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    models: list[str]
    active: int
    capacity: int


class ModelInfo(BaseModel):
    name: str
    title: str
    scale: Optional[int]
    arch: Optional[str]
    purpose: str
    licence: str
    description: str
    default: bool
    loaded: bool


class ModelList(BaseModel):
    default: str
    models: list[ModelInfo]
    limits: dict[str, float]


class JobInfo(BaseModel):
    id: str
    status: str
    progress: float
    model: str
    filename: str
    created: float
    started: Optional[float] = None
    finished: Optional[float] = None
    expires: Optional[float] = None
    width: Optional[int] = None
    height: Optional[int] = None
    content_type: Optional[str] = None
    result_url: Optional[str] = None
    error: Optional[ErrorBody] = None
    quality: Optional[dict[str, Any]] = None  # report=true: NIQE vs bicubic, uncertainty mean/p99, flagged
    uncertainty_url: Optional[str] = None  # report=true: the uncertainty heatmap PNG (output size)


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    words = {
        404: "Not found",
        409: "Not finished",
        413: "Too large",
        415: "Not an image / not multipart",
        422: "Invalid options or broken image",
        429: "Queue full",
        503: "Not ready, overloaded or timed out",
    }
    return {c: {"model": ErrorBody, "description": words.get(c, "Error")} for c in codes}


def upload_body(models: list[str]) -> dict[str, Any]:
    """The multipart request body, for the spec (the body is parsed by ``receive_upload``, not FastAPI).
    An empty form field counts as absent (``parse_params``; HTML forms send them), so the spec allows it."""
    body = _upload_fields(models)
    props = body["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    for key, prop in props.items():
        if key != "file":
            props[key] = {"anyOf": [prop, {"type": "string", "maxLength": 0}],
                          **({"description": prop["description"]} if "description" in prop else {})}
    return body


def _upload_fields(models: list[str]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {
                                "type": "string",
                                "format": "binary",
                                "description": "The image (PNG, JPEG, WebP, TIFF, BMP...).",
                            },
                            "model": {
                                "type": "string",
                                "enum": models,
                                "description": "Default: the first served model.",
                            },
                            "outscale": {
                                "type": "number",
                                "exclusiveMinimum": 0,
                                "maximum": MAX_OUTSCALE,
                                "description": "Final scale (default: the model's).",
                            },
                            "scale": {
                                "type": "number",
                                "exclusiveMinimum": 0,
                                "maximum": MAX_OUTSCALE,
                                "description": "Alias of outscale.",
                            },
                            "width": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
                            "height": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
                            "format": {"type": "string", "enum": ["auto", *CONTENT_TYPES], "default": "png"},
                            "quality": {"type": "integer", "minimum": 1, "maximum": 100, "default": 95},
                            "self_ensemble": {"type": "boolean", "default": False,
                                              "description": "Average the 8 flips/rotations (~8x slower)."},
                            "report": {"type": "boolean", "default": False,
                                       "description": "Quality check: x8 self-ensemble (~8x slower), NIQE "
                                                      "gate, uncertainty heatmap."},
                            "fallback": {"type": "string", "enum": ["bicubic"],
                                         "description": "With report: send bicubic for a flagged image."},
                        },
                    }
                }
            },
        }
    }


IMAGE_RESPONSE = {
    "content": {
        ct: {"schema": {"type": "string", "format": "binary"}}
        for ct in sorted({v[1] for v in CONTENT_TYPES.values()})
    },
    "description": "The upscaled image.",
}

#: A job's result: an image (/v1/jobs) or an MP4 video (/v1/video).
JOB_RESULT_RESPONSE = {
    "content": {**IMAGE_RESPONSE["content"], "video/mp4": {"schema": {"type": "string", "format": "binary"}}},
    "description": "The upscaled image, or video for a /v1/video job.",
}
