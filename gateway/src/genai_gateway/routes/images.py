"""Image route: OpenAI-compatible POST /v1/images/generations over the inference service's GenerateImages."""

from __future__ import annotations

import base64
import time

from fastapi import APIRouter, Request
from genai.inference.v1 import inference_service_pb2 as pb

from genai_gateway.errors import GatewayError, call
from genai_gateway.routes import calls
from genai_gateway.routes import images_protocol as api
from genai_gateway.routing import ApiRoute

router = APIRouter(tags=["images"], route_class=ApiRoute)


@router.post("/v1/images/generations", response_model=api.ImageResponse, response_model_exclude_none=True,
             summary="Create images (OpenAI) with an image model of the fine-tune service")
async def create_images(body: api.ImageRequest, request: Request) -> api.ImageResponse:
    if body.response_format == "url":
        raise GatewayError(400, "response_format url is not supported: images come back as b64_json",
                           "invalid_request_error", "invalid_argument", "response_format")
    size = 0
    if body.size != "auto":
        width, _, height = body.size.partition("x")
        if width != height:
            raise GatewayError(400, f"size {body.size} is not square; image models here draw square images",
                               "invalid_request_error", "invalid_argument", "size")
        size = int(width)
    message = pb.GenerateImagesRequest(request_id=calls.request_id(request), model=body.model, prompt=body.prompt,
                                       n=body.n, size=size, steps=body.steps or 0)
    if body.seed is not None:
        message.seed = body.seed
    reply = await call(calls.stub(request, "inference").GenerateImages(message))
    side = int.from_bytes(reply.images[0].png[16:20], "big") if reply.images else size  # the PNG header's width
    return api.ImageResponse(created=int(time.time()), size=f"{side}x{side}",
                             data=[api.ImageData(b64_json=base64.b64encode(i.png).decode("ascii")) for i in reply.images])
