"""The ports over the other services' gRPC APIs (``genai_core.downstream``: traced, retried, our errors)."""

from __future__ import annotations

import asyncio

from genai.embedding.v1 import embedding_service_pb2 as embedding_pb
from genai.inference.v1 import inference_service_pb2 as inference_pb
from genai.tokenizer.v1 import tokenizer_service_pb2 as tokenizer_pb
from genai_core.downstream import Downstream
from genai_core.errors import Unavailable

from genai_finetune.types import SCRATCH, Artifact, TokenizerFiles


class InferenceModelServer:
    """``ports.ModelServer`` over the inference service's LoadAdapter/LoadModel RPCs (and the embedding service's
    LoadModel for encoders and cross-encoders). Artifacts are named by id: the serving services find them under
    their GENAI_INFERENCE_ARTIFACTS_DIR / GENAI_EMBEDDING_ARTIFACTS_DIR (this service's artifacts directory, on
    a filesystem they all see)."""

    def __init__(self, downstream: Downstream) -> None:
        self._downstream = downstream

    @property
    def _client(self):
        return self._downstream.client("inference")

    async def load_adapter(self, artifact: Artifact) -> None:
        await self._client.LoadAdapter(inference_pb.LoadAdapterRequest(
            adapter_name=artifact.model_id, base_model=artifact.base_model, artifact_id=artifact.id))

    async def load_model(self, artifact: Artifact) -> None:
        # A model trained from random weights has no base model in the inference service.
        base = "" if artifact.base_model == SCRATCH else artifact.base_model
        await self._client.LoadModel(inference_pb.LoadModelRequest(
            model_id=artifact.model_id, base_model=base, artifact_id=artifact.id), timeout=300)

    async def unload_adapter(self, model_id: str) -> None:
        await self._client.UnloadAdapter(inference_pb.UnloadAdapterRequest(adapter_name=model_id))

    async def unload_model(self, model_id: str) -> None:
        await self._client.UnloadModel(inference_pb.UnloadModelRequest(model_id=model_id))

    async def load_encoder(self, artifact: Artifact) -> None:
        await self._downstream.client("embedding").LoadModel(embedding_pb.LoadModelRequest(
            model_id=artifact.model_id, artifact_id=artifact.id), timeout=300)

    async def unload_encoder(self, model_id: str) -> None:
        await self._downstream.client("embedding").UnloadModel(embedding_pb.UnloadModelRequest(model_id=model_id))

    async def served(self) -> set[str]:
        names: set[str] = set()
        try:
            info = await self._downstream.client("embedding").GetInfo(embedding_pb.GetInfoRequest())
            names.update(info.models)
        except Unavailable:  # no embedding service (not deployed, or down): only what the inference service serves
            pass
        token = ""
        while True:
            reply = await self._client.ListModels(inference_pb.ListModelsRequest(page_token=token))
            names.update(m.id for m in reply.models)
            token = reply.next_page_token
            if not token:
                return names


class TokenizerServiceFiles:
    """``ports.TokenizerSource`` over the tokenizer service's GetTokenizerFiles. Job creation runs in a worker
    thread, so the call is handed to the server's event loop (where the channel lives) and waited for."""

    def __init__(self, downstream: Downstream, loop: asyncio.AbstractEventLoop, timeout: float = 60.0) -> None:
        self._downstream = downstream
        self._loop = loop
        self._timeout = timeout

    async def _files(self, tokenizer_id: str) -> TokenizerFiles:
        reply = await self._downstream.client("tokenizer").GetTokenizerFiles(
            tokenizer_pb.GetTokenizerFilesRequest(tokenizer=tokenizer_id))
        return TokenizerFiles(reply.tokenizer.id, reply.tokenizer.revision, reply.tokenizer.vocab_size,
                              [(f.name, f.content) for f in reply.files])

    def files(self, tokenizer_id: str) -> TokenizerFiles:
        return asyncio.run_coroutine_threadsafe(self._files(tokenizer_id), self._loop).result(self._timeout)
