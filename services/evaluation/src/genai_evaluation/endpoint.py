"""``LanguageModel`` over any OpenAI-compatible server (vLLM, TGI, Ollama, a hosted API, this platform's gateway).

Generation uses ``POST {base}/completions``. Scoring uses it the way lm-evaluation-harness does: token-id
prompts with ``echo``, ``logprobs: 1`` and ``max_tokens: 1``, reading the prompt's ``token_logprobs`` and
``top_logprobs``. Token ids and the chat template come from the server's tokenizer routes
(``/tokenizer_info``, ``/tokenize``, vLLM's shapes, which this platform's gateway serves too); a server
without them can run generation tasks only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
from genai_core.errors import FailedPrecondition, GenAIError, InvalidArgument, NotFound, Unavailable
from jinja2.sandbox import ImmutableSandboxedEnvironment

from genai_evaluation.ports import Generated, GenerateParams, ModelInfo, Scored
from genai_evaluation.types import Endpoint, Usage

MAX_STOP = 4  # OpenAI's limit on stop sequences


class EndpointModel:
    def __init__(self, endpoint: Endpoint, *, timeout: float = 120.0) -> None:
        self._endpoint = endpoint
        self._base = endpoint.base_url.rstrip("/")
        self._root = self._base[: -len("/v1")] if self._base.endswith("/v1") else self._base
        headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        self._http = httpx.AsyncClient(timeout=timeout, headers=headers)
        self._info: ModelInfo | None = None
        self._tokenizer_info: dict[str, Any] | None = None

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            reply = await self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise Unavailable(f"the endpoint {self._base} is unreachable: {exc.__class__.__name__}",
                              reason="ENDPOINT_UNAVAILABLE", resource_type="endpoint", resource_name=self._base) from None
        if reply.status_code == 404:
            raise NotFound(f"the endpoint answered 404 for {url}", resource_type="endpoint", resource_name=url)
        if reply.status_code in (400, 422):
            raise InvalidArgument(f"the endpoint rejected the request: {reply.text[:300]}")
        if reply.status_code >= 400:
            raise FailedPrecondition(f"the endpoint answered {reply.status_code}: {reply.text[:300]}",
                                     reason="ENDPOINT_ERROR", resource_type="endpoint", resource_name=self._base)
        return reply.json()

    async def check(self) -> None:
        listed = await self._call("GET", f"{self._base}/models")
        ids = {m.get("id") for m in listed.get("data", [])}
        if ids and self._endpoint.model not in ids:
            raise NotFound(f"the endpoint {self._base} serves no model {self._endpoint.model!r}; it lists "
                           f"{', '.join(sorted(map(str, ids)))}", resource_type="model",
                           resource_name=self._endpoint.model)

    async def _tokenizer(self) -> dict[str, Any]:
        if self._tokenizer_info is None:
            try:
                self._tokenizer_info = await self._call("GET", f"{self._root}/tokenizer_info")
            except NotFound:
                raise FailedPrecondition(
                    f"the endpoint {self._base} has no /tokenizer_info; log-likelihood tasks and chat templates "
                    "need its tokenizer routes (vLLM's shapes)", reason="ENDPOINT_NO_TOKENIZER") from None
        return self._tokenizer_info

    async def info(self) -> ModelInfo:
        if self._info is None:
            tokens = await self._tokenizer()
            special = tokens.get("bos_token") or tokens.get("eos_token")
            prefix = (await self.tokenize([special]))[0][0] if special else 0
            max_length = 2048
            try:
                card = await self._call("GET", f"{self._base}/models/{self._endpoint.model}")
                max_length = int(card.get("max_model_len") or max_length)
            except GenAIError:
                pass
            self._info = ModelInfo(prefix_token_id=prefix, max_length=max_length)
        return self._info

    async def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        await self._tokenizer()
        replies = await asyncio.gather(*(
            self._call("POST", f"{self._root}/tokenize", json={"prompt": t, "add_special_tokens": False})
            for t in texts))
        return [list(r["tokens"]) for r in replies]

    async def score(self, ids: Sequence[int], start: int, greedy: bool = False) -> Scored:
        reply = await self._call("POST", f"{self._base}/completions", json={
            "model": self._endpoint.model, "prompt": [list(ids)], "max_tokens": 1, "temperature": 0,
            "logprobs": 1, "echo": True})
        logprobs = reply["choices"][0]["logprobs"]
        values = logprobs["token_logprobs"][start: len(ids)]
        tops = logprobs["top_logprobs"][start: len(ids)]
        is_greedy = greedy and all(top is not None and value >= max(top.values()) - 1e-6
                                   for value, top in zip(values, tops, strict=True))
        usage = reply.get("usage") or {}
        return Scored(tuple(float(v) for v in values), is_greedy, Usage(int(usage.get("prompt_tokens", len(ids))), 0))

    async def generate(self, prompt: str, params: GenerateParams) -> Generated:
        body: dict[str, Any] = {"model": self._endpoint.model, "prompt": prompt, "max_tokens": params.max_new_tokens,
                                "temperature": params.temperature, "n": params.n}
        if params.stop:
            body["stop"] = list(params.stop)[:MAX_STOP]
        if params.top_p is not None:
            body["top_p"] = params.top_p
        if params.seed is not None:
            body["seed"] = params.seed
        reply = await self._call("POST", f"{self._base}/completions", json=body)
        choices = sorted(reply["choices"], key=lambda c: c.get("index", 0))
        usage = reply.get("usage") or {}
        return Generated(tuple(c["text"] for c in choices),
                         Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))))

    async def chat_prompt(self, user_text: str) -> str:
        template = (await self._tokenizer()).get("chat_template")
        if not template:
            raise FailedPrecondition(f"the endpoint {self._base} publishes no chat template", reason="NO_CHAT_TEMPLATE")
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(template).render(messages=[{"role": "user", "content": user_text}],
                                                add_generation_prompt=True, bos_token="", eos_token="")
