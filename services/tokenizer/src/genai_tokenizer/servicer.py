"""gRPC adapter: proto in, domain call (off the event loop), proto out. Nothing else."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from genai.tokenizer.v1 import tokenizer_service_pb2 as pb
from genai.tokenizer.v1 import tokenizer_service_pb2_grpc as pb_grpc
from genai_core import rpc
from genai_core.errors import InvalidArgument
from genai_core.limits import TOKENIZER
from genai_core.server import ServiceSpec
from genai_core.structs import struct_to_dict

from genai_tokenizer import packing
from genai_tokenizer.model import Kind, Source, Tokenizer, TokenizerInfo
from genai_tokenizer.registry import TokenizerRegistry, TrainCorpus
from genai_tokenizer.training import TrainSpec

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TokenizerService"].full_name
MAX_PAGE_SIZE = TOKENIZER.max_page_size

_KINDS = {
    Kind.BPE: pb.TOKENIZER_KIND_BPE,
    Kind.WORDPIECE: pb.TOKENIZER_KIND_WORDPIECE,
    Kind.UNIGRAM: pb.TOKENIZER_KIND_UNIGRAM,
}
_KINDS_IN = {v: k for k, v in _KINDS.items()}
_SOURCES = {
    Source.BUILTIN: pb.TOKENIZER_SOURCE_BUILTIN,
    Source.TRAINED: pb.TOKENIZER_SOURCE_TRAINED,
    Source.CONFIGURED: pb.TOKENIZER_SOURCE_CONFIGURED,
}
_STRATEGIES = {
    pb.PACK_STRATEGY_UNSPECIFIED: packing.Strategy.GREEDY,
    pb.PACK_STRATEGY_GREEDY: packing.Strategy.GREEDY,
    pb.PACK_STRATEGY_PREFIX: packing.Strategy.PREFIX,
}


def info_to_proto(info: TokenizerInfo) -> pb.TokenizerInfo:
    out = pb.TokenizerInfo(
        id=info.id,
        kind=_KINDS.get(info.kind, pb.TOKENIZER_KIND_UNSPECIFIED),
        source=_SOURCES[info.source],
        vocab_size=info.vocab_size,
        max_length=min(info.max_length, 2**32 - 1),
        special_tokens=[pb.SpecialToken(role=s.role, content=s.content, id=s.id) for s in info.special_tokens],
        has_chat_template=info.has_chat_template,
        revision=info.revision,
        model=info.model,
        max_batch_size=info.max_batch_size,
        max_input_chars=info.max_input_chars,
    )
    if info.create_time is not None:
        out.create_time.FromDatetime(info.create_time)
    return out


def _message(m: pb.ChatMessage) -> dict:
    message: dict = {"role": m.role, "content": m.content}
    if m.HasField("name"):
        message["name"] = m.name
    if m.HasField("tool_call_id"):
        message["tool_call_id"] = m.tool_call_id
    if m.tool_calls:
        message["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": struct_to_dict(c.arguments)},
            }
            for c in m.tool_calls
        ]
    return message


def _tool(t: pb.Tool) -> dict:
    return {
        "type": "function",
        "function": {
            "name": t.name,
            "description": t.description,
            "parameters": struct_to_dict(t.parameters),
        },
    }


class TokenizerServicer(pb_grpc.TokenizerServiceServicer):
    """Each method: proto → domain (in a worker thread; the Rust tokenizer releases the GIL) → proto."""

    def __init__(self, registry: TokenizerRegistry) -> None:
        self._registry = registry

    def _get(self, name: str) -> Tokenizer:
        return self._registry.get(name)

    async def Tokenize(self, request, context):
        tok = self._get(request.tokenizer)
        add_special = request.add_special_tokens if request.HasField("add_special_tokens") else True
        results = await asyncio.to_thread(
            tok.encode,
            list(request.texts),
            add_special_tokens=add_special,
            return_tokens=request.return_tokens,
            return_offsets=request.return_offsets,
        )
        return pb.TokenizeResponse(
            request_id=rpc.request_id(request),
            tokenizer=tok.id,
            encodings=[
                pb.Encoding(
                    ids=r.ids,
                    tokens=r.tokens,
                    offsets=[pb.Offset(start=s, end=e) for s, e in r.offsets],
                    special_flags=r.special_flags,
                    token_count=len(r.ids),
                )
                for r in results
            ],
        )

    async def Detokenize(self, request, context):
        tok = self._get(request.tokenizer)
        texts = await asyncio.to_thread(
            tok.decode, [list(s.ids) for s in request.sequences], skip_special_tokens=request.skip_special_tokens
        )
        return pb.DetokenizeResponse(request_id=rpc.request_id(request), tokenizer=tok.id, texts=texts)

    async def CountTokens(self, request, context):
        tok = self._get(request.tokenizer)
        add_special = request.add_special_tokens if request.HasField("add_special_tokens") else True
        counts = await asyncio.to_thread(tok.count, list(request.texts), add_special_tokens=add_special)
        return pb.CountTokensResponse(
            request_id=rpc.request_id(request), tokenizer=tok.id, counts=counts, total=sum(counts)
        )

    async def RenderChatTemplate(self, request, context):
        tok = self._get(request.tokenizer)
        text, ids = await asyncio.to_thread(
            tok.render_chat,
            [_message(m) for m in request.messages],
            add_generation_prompt=request.add_generation_prompt,
            tools=[_tool(t) for t in request.tools],
            chat_template=request.chat_template if request.HasField("chat_template") else None,
        )
        return pb.RenderChatTemplateResponse(
            request_id=rpc.request_id(request), tokenizer=tok.id, text=text, ids=ids, token_count=len(ids)
        )

    async def PackContext(self, request, context):
        tok = self._get(request.tokenizer)
        result = await asyncio.to_thread(
            packing.pack,
            tok,
            budget=request.token_budget,
            system_prompt=request.system_prompt,
            question=request.question,
            chunks=list(request.chunks),
            reserved=request.reserved_tokens,
            strategy=_STRATEGIES.get(request.strategy, packing.Strategy.GREEDY),
            separator_tokens=request.separator_tokens if request.HasField("separator_tokens") else None,
        )
        return pb.PackContextResponse(
            request_id=rpc.request_id(request),
            tokenizer=tok.id,
            selected_indices=result.selected,
            chunk_token_counts=result.chunk_counts,
            used_tokens=result.used_tokens,
            remaining_tokens=result.remaining_tokens,
            fixed_tokens=result.fixed_tokens,
        )

    async def ListTokenizers(self, request, context):
        size = request.page_size or MAX_PAGE_SIZE
        if size > MAX_PAGE_SIZE:
            raise InvalidArgument.for_field("page_size", f"must be at most {MAX_PAGE_SIZE}")
        tokenizers = self._registry.list()
        # The page token is the last id of the previous page: stable while tokenizers are added.
        remaining = [t for t in tokenizers if t.id > request.page_token] if request.page_token else tokenizers
        page = remaining[:size]
        return pb.ListTokenizersResponse(
            request_id=rpc.request_id(request),
            tokenizers=[info_to_proto(t.info) for t in page],
            next_page_token=page[-1].id if len(remaining) > size else "",
            default_tokenizer=self._registry.default_id,
        )

    async def GetTokenizer(self, request, context):
        tok = self._get(request.tokenizer)
        return pb.GetTokenizerResponse(request_id=rpc.request_id(request), tokenizer=info_to_proto(tok.info))

    async def TrainTokenizer(self, request, context):
        if request.kind not in _KINDS_IN:
            raise InvalidArgument.for_field("kind", "set TOKENIZER_KIND_BPE, TOKENIZER_KIND_WORDPIECE or TOKENIZER_KIND_UNIGRAM")
        corpus_kind = request.WhichOneof("corpus")
        if corpus_kind is None:
            raise InvalidArgument.for_field("corpus", "send the corpus inline or as files under the data directory")
        corpus = (
            TrainCorpus(texts=tuple(request.inline.texts))
            if corpus_kind == "inline"
            else TrainCorpus(paths=tuple(request.files.paths))
        )
        spec = TrainSpec(
            kind=_KINDS_IN[request.kind],
            vocab_size=request.vocab_size,
            special_tokens=tuple(request.special_tokens),
            min_frequency=request.min_frequency if request.HasField("min_frequency") else 2,
            lowercase=request.lowercase,
        )
        trained = await asyncio.to_thread(
            self._registry.train,
            request.tokenizer_id,
            spec,
            corpus,
            max_length=request.max_length if request.HasField("max_length") else None,
            overwrite=request.overwrite,
        )
        reply = pb.TrainTokenizerResponse(
            request_id=rpc.request_id(request),
            tokenizer=info_to_proto(trained.tokenizer.info),
            trained_chars=trained.trained_chars,
        )
        reply.training_duration.FromTimedelta(timedelta(seconds=trained.seconds))
        return reply

    async def GetTokenizerFiles(self, request, context):
        tok, files = await asyncio.to_thread(self._registry.files, request.tokenizer)
        return pb.GetTokenizerFilesResponse(
            request_id=rpc.request_id(request), tokenizer=info_to_proto(tok.info),
            files=[pb.TokenizerFile(name=name, content=content) for name, content in files],
        )


def service_spec(registry: TokenizerRegistry) -> ServiceSpec:
    servicer = TokenizerServicer(registry)
    return ServiceSpec(SERVICE_NAME, lambda server: pb_grpc.add_TokenizerServiceServicer_to_server(servicer, server))
