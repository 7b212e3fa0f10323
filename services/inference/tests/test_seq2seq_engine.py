"""Text-to-text models served by LoadModel: a T5-style encoder-decoder directory (as the fine-tune service's
pretrain_encoder_decoder method saves it) runs on the seq2seq backend; what it cannot do is refused clearly."""

from __future__ import annotations

import pytest
from genai_core.errors import InvalidArgument
from genai_inference.registry import model_factory
from genai_inference.settings import InferenceSettings
from genai_inference.types import Sampling


@pytest.fixture(scope="module")
def t5_dir(source, tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(str(source.directory))
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1,
                      num_heads=4, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id)
    out = tmp_path_factory.mktemp("t5")
    T5ForConditionalGeneration(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
async def t5(t5_dir, cache_dir):
    inference = await model_factory(InferenceSettings(cache_dir=cache_dir), None)("ft:scratch:t5:ftjob-1", t5_dir, None)
    yield inference
    await inference.backend.close()


async def test_text_to_text_generation(t5):
    info = t5.base
    assert info.engine == "torch-seq2seq" and not info.has_chat_template
    request = t5.request("r1", "ft:scratch:t5:ftjob-1", text="To be, or not to be",
                         sampling=Sampling(max_new_tokens=6, temperature=0.0), constraint=None)
    first = await t5.collect(request)
    again = await t5.collect(request)
    completion = first.completions[0]
    assert 1 <= len(completion.token_ids) <= 6 and completion.finish is not None
    assert completion.token_ids == again.completions[0].token_ids  # greedy is deterministic
    assert first.done.usage.prompt_tokens == len(request.prompt_ids)
    sampled = await t5.collect(t5.request("r2", "ft:scratch:t5:ftjob-1", text="To be", constraint=None,
                                          sampling=Sampling(max_new_tokens=4, temperature=1.0, n=2, seed=3)))
    assert len(sampled.completions) == 2


async def test_logprobs_are_refused_for_a_text_to_text_model(t5):
    request = t5.request("r3", "ft:scratch:t5:ftjob-1", text="To be", constraint=None,
                         sampling=Sampling(max_new_tokens=4, temperature=0.0, logprobs=True))
    with pytest.raises(InvalidArgument) as info:
        await t5.collect(request)
    assert "text-to-text" in info.value.message and info.value.field_violations[0].field == "sampling.logprobs"
