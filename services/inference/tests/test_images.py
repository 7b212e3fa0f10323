"""Image models served by LoadModel: a diffusion artifact (as the fine-tune service's diffusion method saves it)
draws PNG images with GenerateImages; text RPCs refuse it and GenerateImages refuses text models, each with a
message that names the right route."""

from __future__ import annotations

import io
import json

import grpc
import pytest
from genai.inference.v1 import inference_service_pb2 as pb

pytestmark = pytest.mark.slow

NAME = "ft:scratch:digits:ftjob-img1"


@pytest.fixture(scope="module")
def image_artifact(settings):
    import torch
    from diffusers import DDIMScheduler, UNet2DModel

    target = settings.artifacts_dir / "ftart-img1"
    torch.manual_seed(0)
    UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "UpBlock2D"), num_class_embeds=3).save_pretrained(str(target / "unet"))
    DDIMScheduler(num_train_timesteps=100).save_pretrained(str(target / "scheduler"))
    (target / "genai_image_model.json").write_text(json.dumps(
        {"labels": ["0", "1", "2"], "image_size": 8, "channels": 1, "sample_steps": 4, "conditional": True}))
    return "ftart-img1"


async def _error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def test_image_model_draws_pngs_and_refuses_text(stub, image_artifact):
    from PIL import Image

    loaded = await stub.LoadModel(pb.LoadModelRequest(model_id=NAME, artifact_id=image_artifact))
    assert loaded.model.id == NAME and loaded.model.engine == "diffusers"
    try:
        assert NAME in [m.id for m in (await stub.ListModels(pb.ListModelsRequest())).models]
        reply = await stub.GenerateImages(pb.GenerateImagesRequest(model=NAME, prompt="2", n=3, seed=1))
        assert reply.model == NAME and len(reply.images) == 3 and {i.label for i in reply.images} == {"2"}
        image = Image.open(io.BytesIO(reply.images[0].png))
        assert image.format == "PNG" and image.size == (8, 8)
        again = await stub.GenerateImages(pb.GenerateImagesRequest(model=NAME, prompt="2", n=3, seed=1))
        assert [i.png for i in again.images] == [i.png for i in reply.images]  # a seed fixes the noise

        bad_label = await _error(stub.GenerateImages(pb.GenerateImagesRequest(model=NAME, prompt="cat")))
        assert bad_label.code() == grpc.StatusCode.INVALID_ARGUMENT and "0, 1, 2" in bad_label.details()
        bad_size = await _error(stub.GenerateImages(pb.GenerateImagesRequest(model=NAME, prompt="1", size=64)))
        assert bad_size.code() == grpc.StatusCode.INVALID_ARGUMENT and "8x8" in bad_size.details()
        text = await _error(stub.Generate(pb.GenerateRequest(model=NAME, text="hello")))
        assert text.code() == grpc.StatusCode.FAILED_PRECONDITION and "image model" in text.details()
        wrong = await _error(stub.GenerateImages(pb.GenerateImagesRequest(model="smollm2-135m-instruct", prompt="1")))
        assert wrong.code() == grpc.StatusCode.FAILED_PRECONDITION and "text model" in wrong.details()
        unknown = await _error(stub.GenerateImages(pb.GenerateImagesRequest(model="nope", prompt="1")))
        assert unknown.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await stub.UnloadModel(pb.UnloadModelRequest(model_id=NAME))
    assert NAME not in [m.id for m in (await stub.ListModels(pb.ListModelsRequest())).models]
