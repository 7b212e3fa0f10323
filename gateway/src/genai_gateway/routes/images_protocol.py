"""JSON shapes of the image route: OpenAI's POST /v1/images/generations (``b64_json`` PNG images). Integer
bounds come from ``genai_core.limits.INFERENCE`` (what the inference service enforces)."""

from __future__ import annotations

from typing import Literal

from genai_core.limits import INFERENCE
from pydantic import BaseModel, ConfigDict, Field

from genai_gateway.routes._bounds import JSON_SAFE_MAX


class ImageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str = Field(..., description="What to draw: for a class-conditioned model, one of its class labels.")
    model: str = Field(..., description="An image model the inference service serves (a fine-tune diffusion model).")
    n: int = Field(1, ge=1, le=INFERENCE.max_images, description="The number of images.")
    # ASCII digits (a pattern's \d takes any Unicode digit), at most four: the side fits the proto's uint32.
    size: str = Field("auto", pattern=r"^(auto|[1-9][0-9]{0,3}x[1-9][0-9]{0,3})$",
                      description="WIDTHxHEIGHT (square, the model's own) or auto.")
    response_format: Literal["b64_json", "url"] = Field(
        "b64_json", description="Only b64_json: the gateway keeps no files to link to.")
    output_format: Literal["png"] = "png"
    quality: str | None = Field(None, description="Accepted for OpenAI compatibility; not used.")
    style: str | None = Field(None, description="Accepted for OpenAI compatibility; not used.")
    user: str | None = Field(None, description="Accepted for OpenAI compatibility; not used.")
    seed: int | None = Field(None, ge=0, le=JSON_SAFE_MAX, description="Extension: the seed of the starting noise.")
    steps: int | None = Field(None, ge=1, le=INFERENCE.max_image_steps,
                              description="Extension: the number of denoising steps.")


class ImageData(BaseModel):
    b64_json: str
    revised_prompt: str | None = None


class ImageResponse(BaseModel):
    created: int
    data: list[ImageData]
    output_format: Literal["png"] = "png"
    size: str
