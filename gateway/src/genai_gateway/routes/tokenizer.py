"""Tokenizer routes: /v1/tokenize, /v1/detokenize, /v1/tokens/count, /v1/chat/template,
/v1/context/pack and /v1/tokenizers (list, get, train)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from genai.tokenizer.v1 import tokenizer_service_pb2 as pb
from google.protobuf import json_format, struct_pb2

from genai_gateway.errors import GatewayError, call
from genai_gateway.routes import calls
from genai_gateway.routes import tokenizer_protocol as api
from genai_gateway.routing import ApiRoute

router = APIRouter(tags=["tokenizer"], route_class=ApiRoute)

_KIND_NAMES = {
    pb.TOKENIZER_KIND_BPE: "bpe",
    pb.TOKENIZER_KIND_WORDPIECE: "wordpiece",
    pb.TOKENIZER_KIND_UNIGRAM: "unigram",
}
_KINDS = {v: k for k, v in _KIND_NAMES.items()}
_SOURCE_NAMES = {
    pb.TOKENIZER_SOURCE_BUILTIN: "builtin",
    pb.TOKENIZER_SOURCE_TRAINED: "trained",
    pb.TOKENIZER_SOURCE_CONFIGURED: "configured",
}


def _texts(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _struct(value: dict, param: str) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    try:
        out.update(value)
    except (TypeError, ValueError) as exc:
        raise GatewayError(400, f"{param}: {exc}", "invalid_request_error", "invalid_argument", param) from exc
    return out


def _info(info: pb.TokenizerInfo) -> api.TokenizerInfo:
    return api.TokenizerInfo(
        id=info.id,
        kind=_KIND_NAMES.get(info.kind, "unknown"),
        source=_SOURCE_NAMES.get(info.source, "unknown"),
        vocab_size=info.vocab_size,
        max_length=info.max_length,
        special_tokens=[api.SpecialToken(role=s.role, content=s.content, id=s.id) for s in info.special_tokens],
        has_chat_template=info.has_chat_template,
        revision=info.revision,
        model=info.model,
        created=info.create_time.seconds if info.HasField("create_time") else None,
        max_batch_size=info.max_batch_size,
        max_input_chars=info.max_input_chars,
    )


def _message(i: int, m: api.ChatMessage) -> pb.ChatMessage:
    content = m.content if isinstance(m.content, str) else "".join(p.text for p in m.content or [])
    out = pb.ChatMessage(role=m.role, content=content or "")
    if m.name is not None:
        out.name = m.name
    if m.tool_call_id is not None:
        out.tool_call_id = m.tool_call_id
    for j, call_ in enumerate(m.tool_calls):
        param = f"messages[{i}].tool_calls[{j}].function.arguments"
        arguments = call_.function.arguments
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments or "{}")
            except json.JSONDecodeError as exc:
                raise GatewayError(
                    400, f"{param}: not valid JSON ({exc})", "invalid_request_error", "invalid_argument", param
                ) from exc
        if not isinstance(arguments, dict):
            raise GatewayError(400, f"{param}: must be a JSON object", "invalid_request_error", "invalid_argument", param)
        out.tool_calls.append(pb.ToolCall(id=call_.id, name=call_.function.name, arguments=_struct(arguments, param)))
    return out




@router.post("/v1/tokenize", response_model=api.TokenizeResponse, summary="Tokenize one or more texts")
async def tokenize(body: api.TokenizeRequest, request: Request) -> api.TokenizeResponse:
    reply = await call(
        calls.stub(request, "tokenizer").Tokenize(
            pb.TokenizeRequest(
                request_id=calls.request_id(request),
                tokenizer=body.tokenizer,
                texts=_texts(body.input),
                add_special_tokens=body.add_special_tokens,
                return_tokens=body.return_tokens,
                return_offsets=body.return_offsets,
            )
        ),
        {r"^texts": "input"},
    )
    return api.TokenizeResponse(
        tokenizer=reply.tokenizer,
        request_id=reply.request_id,
        data=[
            api.Encoding(
                index=i,
                ids=list(e.ids),
                count=e.token_count,
                special_flags=list(e.special_flags),
                tokens=list(e.tokens) if body.return_tokens else None,
                offsets=[(o.start, o.end) for o in e.offsets] if body.return_offsets else None,
            )
            for i, e in enumerate(reply.encodings)
        ],
    )


@router.post("/v1/detokenize", response_model=api.DetokenizeResponse, summary="Decode token ids into text")
async def detokenize(body: api.DetokenizeRequest, request: Request) -> api.DetokenizeResponse:
    ids = body.ids
    sequences = [ids] if not ids or isinstance(ids[0], int) else ids
    reply = await call(
        calls.stub(request, "tokenizer").Detokenize(
            pb.DetokenizeRequest(
                request_id=calls.request_id(request),
                tokenizer=body.tokenizer,
                sequences=[pb.TokenIds(ids=s) for s in sequences],
                skip_special_tokens=body.skip_special_tokens,
            )
        ),
        {r"^sequences\[0\]\.ids": "ids", r"^sequences": "ids"}
        if sequences is not ids
        else {r"^sequences\[(\d+)\]\.ids": r"ids[\1]", r"^sequences": "ids"},
    )
    return api.DetokenizeResponse(
        tokenizer=reply.tokenizer,
        request_id=reply.request_id,
        data=[api.DecodedText(index=i, text=t) for i, t in enumerate(reply.texts)],
    )


@router.post("/v1/tokens/count", response_model=api.CountResponse, summary="Count the tokens of texts")
async def count_tokens(body: api.CountRequest, request: Request) -> api.CountResponse:
    reply = await call(
        calls.stub(request, "tokenizer").CountTokens(
            pb.CountTokensRequest(
                request_id=calls.request_id(request),
                tokenizer=body.tokenizer,
                texts=_texts(body.input),
                add_special_tokens=body.add_special_tokens,
            )
        ),
        {r"^texts": "input"},
    )
    return api.CountResponse(
        tokenizer=reply.tokenizer, counts=list(reply.counts), total=reply.total, request_id=reply.request_id
    )


@router.post("/v1/chat/template", response_model=api.ChatTemplateResponse, summary="Render a chat template")
async def chat_template(body: api.ChatTemplateRequest, request: Request) -> api.ChatTemplateResponse:
    message = pb.RenderChatTemplateRequest(
        request_id=calls.request_id(request),
        tokenizer=body.tokenizer,
        messages=[_message(i, m) for i, m in enumerate(body.messages)],
        add_generation_prompt=body.add_generation_prompt,
        tools=[
            pb.Tool(
                name=t.function.name,
                description=t.function.description,
                parameters=_struct(t.function.parameters, f"tools[{i}].function.parameters"),
            )
            for i, t in enumerate(body.tools)
        ],
    )
    if body.chat_template is not None:
        message.chat_template = body.chat_template
    reply = await call(calls.stub(request, "tokenizer").RenderChatTemplate(message))
    return api.ChatTemplateResponse(
        tokenizer=reply.tokenizer, text=reply.text, ids=list(reply.ids), count=reply.token_count,
        request_id=reply.request_id,
    )


@router.post("/v1/context/pack", response_model=api.PackResponse, summary="Fit context chunks to a token budget")
async def pack_context(body: api.PackRequest, request: Request) -> api.PackResponse:
    message = pb.PackContextRequest(
        request_id=calls.request_id(request),
        tokenizer=body.tokenizer,
        token_budget=body.token_budget,
        system_prompt=body.system_prompt,
        question=body.question,
        chunks=body.chunks,
        reserved_tokens=body.reserved_tokens,
        strategy=pb.PACK_STRATEGY_PREFIX if body.strategy == "prefix" else pb.PACK_STRATEGY_GREEDY,
    )
    if body.separator_tokens is not None:
        message.separator_tokens = body.separator_tokens
    reply = await call(calls.stub(request, "tokenizer").PackContext(message))
    return api.PackResponse(
        **json_format.MessageToDict(
            reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    )


@router.get("/v1/tokenizers", response_model=api.TokenizerList, summary="List tokenizers")
async def list_tokenizers(request: Request) -> api.TokenizerList:
    stub = calls.stub(request, "tokenizer")
    data: list[api.TokenizerInfo] = []
    token, default = "", ""
    while True:
        reply = await call(stub.ListTokenizers(pb.ListTokenizersRequest(request_id=calls.request_id(request), page_token=token)))
        data.extend(_info(t) for t in reply.tokenizers)
        default, token = reply.default_tokenizer, reply.next_page_token
        if not token:
            break
    return api.TokenizerList(data=data, default=default)


@router.get("/v1/tokenizers/{tokenizer_id}", response_model=api.TokenizerInfo, summary="Get one tokenizer")
async def get_tokenizer(tokenizer_id: str, request: Request) -> api.TokenizerInfo:
    reply = await call(
        calls.stub(request, "tokenizer").GetTokenizer(
            pb.GetTokenizerRequest(request_id=calls.request_id(request), tokenizer=tokenizer_id)
        )
    )
    return _info(reply.tokenizer)


@router.post(
    "/v1/tokenizers", response_model=api.TrainResponse, status_code=201, summary="Train and register a tokenizer"
)
async def train_tokenizer(body: api.TrainRequest, request: Request) -> api.TrainResponse:
    if (body.texts is None) == (body.files is None):
        raise GatewayError(
            400, "send the corpus as either `texts` or `files`", "invalid_request_error", "invalid_argument", "texts"
        )
    message = pb.TrainTokenizerRequest(
        request_id=calls.request_id(request),
        tokenizer_id=body.id,
        kind=_KINDS[body.kind],
        vocab_size=body.vocab_size,
        special_tokens=body.special_tokens,
        lowercase=body.lowercase,
        overwrite=body.overwrite,
    )
    if body.texts is not None:
        message.inline.texts.extend(body.texts)
    else:
        message.files.paths.extend(body.files or [])
    if body.min_frequency is not None:
        message.min_frequency = body.min_frequency
    if body.max_length is not None:
        message.max_length = body.max_length
    settings = request.app.state.settings
    reply = await call(
        calls.stub(request, "tokenizer").TrainTokenizer(message, timeout=settings.train_timeout),
        {r"^tokenizer_id": "id", r"^inline\.texts": "texts", r"^files\.paths": "files", r"^(inline|corpus)": "texts"},
    )
    return api.TrainResponse(
        tokenizer=_info(reply.tokenizer), trained_chars=reply.trained_chars, training_ms=reply.training_duration.ToMilliseconds(),
        request_id=reply.request_id,
    )
