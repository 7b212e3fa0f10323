"""Train new tokenizers with Hugging Face ``tokenizers``; one recipe per algorithm, in a registry."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from genai_core.errors import InvalidArgument
from genai_core.limits import TOKENIZER
from tokenizers import Tokenizer as RustTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from genai_tokenizer.model import Kind

MIN_VOCAB, MAX_VOCAB = TOKENIZER.min_vocab_size, TOKENIZER.max_vocab_size
# A trainer stops early when the corpus has no more merges or words to add. Below this share of the asked
# vocabulary the corpus is too small for it: an error, instead of a tokenizer far smaller than the model expects.
MIN_VOCAB_REACHED = 0.5

# Which role a well-known special token plays, so trained tokenizers publish bos/eos/pad/unk.
ROLES = {
    "<unk>": "unk_token", "[UNK]": "unk_token",
    "<pad>": "pad_token", "[PAD]": "pad_token", "<|pad|>": "pad_token",
    "<s>": "bos_token", "<|startoftext|>": "bos_token", "<|im_start|>": "bos_token",
    "</s>": "eos_token", "<|endoftext|>": "eos_token", "<|im_end|>": "eos_token",
    "[CLS]": "cls_token", "[SEP]": "sep_token", "[MASK]": "mask_token", "<mask>": "mask_token",
}


@dataclass(frozen=True)
class TrainSpec:
    kind: Kind
    vocab_size: int
    special_tokens: tuple[str, ...]
    min_frequency: int = 2
    lowercase: bool = False


@dataclass(frozen=True)
class Recipe:
    """The pieces of one algorithm: default and required specials, and how to build it."""

    default_specials: tuple[str, ...]
    required_specials: tuple[str, ...]
    build: Callable[[TrainSpec, list[str]], tuple[RustTokenizer, trainers.Trainer]]


def _bpe(spec: TrainSpec, specials: list[str]):
    tok = RustTokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size, min_frequency=spec.min_frequency, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    return tok, trainer


def _wordpiece(spec: TrainSpec, specials: list[str]):
    tok = RustTokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=spec.lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=spec.vocab_size, min_frequency=spec.min_frequency, special_tokens=specials,
        show_progress=False,
    )
    return tok, trainer


def _unigram(spec: TrainSpec, specials: list[str]):
    tok = RustTokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=spec.vocab_size, special_tokens=specials, unk_token="<unk>", show_progress=False
    )
    return tok, trainer


RECIPES: dict[Kind, Recipe] = {
    Kind.BPE: Recipe(("<|endoftext|>", "<|pad|>"), (), _bpe),
    Kind.WORDPIECE: Recipe(("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"), ("[UNK]",), _wordpiece),
    Kind.UNIGRAM: Recipe(("<unk>", "<pad>", "<s>", "</s>"), ("<unk>",), _unigram),
}


@dataclass(frozen=True)
class TrainResult:
    tokenizer: PreTrainedTokenizerFast
    trained_chars: int
    seconds: float


def validate(spec: TrainSpec) -> None:
    if spec.kind not in RECIPES:
        raise InvalidArgument.for_field("kind", f"choose one of {[k.value for k in RECIPES]}")
    if not MIN_VOCAB <= spec.vocab_size <= MAX_VOCAB:
        raise InvalidArgument.for_field("vocab_size", f"must be between {MIN_VOCAB} and {MAX_VOCAB}")
    if spec.min_frequency < 1:
        raise InvalidArgument.for_field("min_frequency", "must be at least 1")
    for i, token in enumerate(spec.special_tokens):
        if not token or token != token.strip():
            raise InvalidArgument.for_field(f"special_tokens[{i}]", "must be non-empty without surrounding spaces")


def train(spec: TrainSpec, corpus: Callable[[], Iterator[str]], *, max_length: int) -> TrainResult:
    """Train on ``corpus`` (called once, streamed) and wrap the result for transformers."""
    validate(spec)
    recipe = RECIPES[spec.kind]
    specials = list(dict.fromkeys([*recipe.required_specials, *(spec.special_tokens or recipe.default_specials)]))
    tok, trainer = recipe.build(spec, specials)
    chars = 0

    def counted() -> Iterator[str]:
        nonlocal chars
        for text in corpus():
            chars += len(text)
            yield text

    started = time.perf_counter()
    tok.train_from_iterator(counted(), trainer=trainer)
    if chars == 0:
        raise InvalidArgument.for_field("corpus", "the corpus is empty; send some text")
    reached = tok.get_vocab_size()
    if reached < MIN_VOCAB_REACHED * spec.vocab_size:
        raise InvalidArgument.for_field(
            "vocab_size", f"the corpus ({chars} characters) is too small for a vocabulary of {spec.vocab_size}: "
            f"training found only {reached} tokens seen at least min_frequency={spec.min_frequency} times; ask for "
            f"at most {reached} or train on more text")
    if spec.kind is Kind.WORDPIECE and "[CLS]" in specials and "[SEP]" in specials:
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
    roles: dict[str, object] = {}
    extra: list[str] = []
    for token in specials:
        role = ROLES.get(token)
        if role and role not in roles:
            roles[role] = token
        else:
            extra.append(token)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=max_length, additional_special_tokens=extra, **roles
    )
    return TrainResult(hf, chars, time.perf_counter() - started)


def read_files(paths: list[Path], chunk_chars: int = 1 << 20) -> Iterator[str]:
    """Stream text files in bounded pieces so a large corpus never sits in memory at once."""
    for path in paths:
        with path.open(encoding="utf-8", errors="replace") as handle:
            while piece := handle.read(chunk_chars):
                yield piece
