"""The three transformer kinds a job can pretrain from random weights, as transformers classes, sized by the
method's settings and shaped to the tokenizer (vocabulary, special tokens):

* decoder: ``LlamaForCausalLM`` (causal LM), served by the inference service;
* encoder: ``BertForMaskedLM`` (masked LM), its ``BertModel`` served mean-pooled by the embedding service;
* encoder-decoder: ``T5ForConditionalGeneration`` (span corruption), served text-to-text by the inference service.

``parameters`` counts a model's weights exactly without allocating them (on torch's meta device), which the
memory estimate uses before a job is queued.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from genai_finetune.labconfigs import DecoderPretrainConfig, EncoderDecoderPretrainConfig, EncoderPretrainConfig

SENTINELS = 100  # T5's <extra_id_0> ... <extra_id_99>, added to the tokenizer for span corruption


def sentinel_tokens(count: int = SENTINELS) -> list[str]:
    return [f"<extra_id_{i}>" for i in range(count)]


@dataclass(frozen=True)
class Kind:
    name: str
    build_config: Callable[[Any, Any], Any]  # (method settings, tokenizer) -> a transformers config
    model_class: str  # the transformers class that trains
    needs: tuple[str, ...]  # the tokenizer roles it cannot do without


def _special(tokenizer, role: str) -> int:
    value = getattr(tokenizer, f"{role}_token_id", None)
    return int(value) if value is not None else 0


def _decoder(c: DecoderPretrainConfig, tokenizer) -> Any:
    from transformers import LlamaConfig

    eos = _special(tokenizer, "eos")
    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=c.hidden_size, num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads, num_key_value_heads=c.num_kv_heads,
        intermediate_size=c.intermediate_size or (8 * c.hidden_size // 3 + 7) // 8 * 8,
        max_position_embeddings=c.seq_length, tie_word_embeddings=True, rope_theta=10000.0,
        bos_token_id=_special(tokenizer, "bos") if tokenizer.bos_token_id is not None else eos, eos_token_id=eos,
        pad_token_id=_special(tokenizer, "pad") if tokenizer.pad_token_id is not None else eos,
    )


def _encoder(c: EncoderPretrainConfig, tokenizer) -> Any:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(tokenizer), hidden_size=c.hidden_size, num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads, intermediate_size=c.intermediate_size or 4 * c.hidden_size,
        max_position_embeddings=c.seq_length, type_vocab_size=2, pad_token_id=_special(tokenizer, "pad"),
    )


def _encoder_decoder(c: EncoderDecoderPretrainConfig, tokenizer) -> Any:
    from transformers import T5Config

    pad = _special(tokenizer, "pad")
    return T5Config(
        vocab_size=len(tokenizer), d_model=c.hidden_size, d_kv=c.hidden_size // c.num_heads,
        d_ff=c.intermediate_size or 2 * c.hidden_size, num_layers=c.num_layers, num_decoder_layers=c.num_layers,
        num_heads=c.num_heads, feed_forward_proj="gated-gelu", tie_word_embeddings=True, dropout_rate=0.0,
        pad_token_id=pad, eos_token_id=_special(tokenizer, "eos"), decoder_start_token_id=pad,
    )


KINDS: dict[type, Kind] = {
    DecoderPretrainConfig: Kind("decoder", _decoder, "LlamaForCausalLM", ("eos",)),
    EncoderPretrainConfig: Kind("encoder", _encoder, "BertForMaskedLM", ("mask", "pad", "cls", "sep")),
    EncoderDecoderPretrainConfig: Kind("encoder-decoder", _encoder_decoder, "T5ForConditionalGeneration",
                                       ("pad", "eos")),
}


def missing_roles(kind: Kind, tokenizer) -> list[str]:
    return [role for role in kind.needs if getattr(tokenizer, f"{role}_token_id", None) is None]


def prepare_tokenizer(config: Any, tokenizer) -> Any:
    """The tokenizer as the kind trains with it: T5 sentinels added; the decoder pads with eos if it has no pad."""
    if isinstance(config, EncoderDecoderPretrainConfig):
        missing = [t for t in sentinel_tokens() if t not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build(config: Any, tokenizer, seed: int) -> Any:
    """A randomly initialised model of the config's kind."""
    import torch
    import transformers

    kind = KINDS[type(config)]
    torch.manual_seed(seed)
    return getattr(transformers, kind.model_class)(kind.build_config(config, tokenizer))


def parameters(config: Any, tokenizer) -> int:
    """The number of weights a model of this config has, counted on the meta device (nothing allocated)."""
    import torch
    import transformers

    kind = KINDS[type(config)]
    with torch.device("meta"):
        model = getattr(transformers, kind.model_class)(kind.build_config(config, tokenizer))
    return sum(p.numel() for p in model.parameters())
