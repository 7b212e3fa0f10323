"""The service's tokenizer (tokenizers + jinja2, no transformers) against transformers on the same files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
from genai_inference.tokenization import Tokenizer

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2 + 2?"}],
    [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Héllo, wörld — ça va? 😀"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "And?"}],
    [{"role": "user", "content": "a literal <|im_end|> in the text\n\n  and spaces  "}],
]
TEXTS = ["Hello world. It's 3.5 <|im_start|>user\n naïve ??!  , done", "", "   ", "日本語のテキスト", "x" * 300]


@pytest.fixture(scope="session")
def pair(gguf_source):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(gguf_source.directory)), Tokenizer(gguf_source.directory)


@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize("generation_prompt", [True, False])
def test_chat_templates_render_as_transformers_does(pair, conversation, generation_prompt):
    reference, ours = pair
    expected = reference.apply_chat_template(conversation, add_generation_prompt=generation_prompt, tokenize=False)
    assert ours.apply_chat_template(conversation, add_generation_prompt=generation_prompt) == expected


@pytest.mark.parametrize("text", TEXTS)
def test_encode_and_decode_as_transformers_does(pair, text):
    reference, ours = pair
    for special in (True, False):
        ids = reference(text, add_special_tokens=special).input_ids
        assert ours(text, add_special_tokens=special).input_ids == ids
        for skip in (True, False):
            assert ours.decode(ids, skip_special_tokens=skip) == reference.decode(ids, skip_special_tokens=skip)
    assert (len(ours), ours.eos_token_id) == (len(reference), reference.eos_token_id)


def _directory(gguf_source, tmp_path: Path, template: object) -> Path:
    shutil.copy(gguf_source.directory / "tokenizer.json", tmp_path / "tokenizer.json")
    config = {"eos_token": {"content": "<|im_end|>"}, "bos_token": "<|im_start|>", "chat_template": template}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    return tmp_path


def test_template_extensions_and_variables(gguf_source, tmp_path):
    """A named template list, tojson keeping non-ASCII text, loop controls, {% generation %}, special tokens and
    caller variables, and raise_exception as a clear error."""
    template = (
        "{{ bos_token }}{% for m in messages %}{% if m.role == 'skip' %}{% continue %}{% endif %}"
        "{% generation %}{{ m | tojson }}{% endgeneration %}{% endfor %}"
        "{% if add_generation_prompt %}[{{ mode }}]{% endif %}{{ eos_token }}"
        "{% if messages | length > 2 %}{{ raise_exception('at most two messages') }}{% endif %}"
    )
    named = [{"name": "tool_use", "template": "unused"}, {"name": "default", "template": template}]
    tokenizer = Tokenizer(_directory(gguf_source, tmp_path, named))
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "ça"}, {"role": "skip", "content": "x"}],
                                             add_generation_prompt=True, mode="brief")
    assert rendered == '<|im_start|>{"role": "user", "content": "ça"}[brief]<|im_end|>'
    assert tokenizer.eos_token_id == tokenizer.backend_tokenizer.token_to_id("<|im_end|>")
    with pytest.raises(jinja2.TemplateError, match="at most two messages"):
        tokenizer.apply_chat_template([{"role": "user", "content": "a"}] * 3)


def test_a_model_without_a_template_says_so(gguf_source, tmp_path):
    tokenizer = Tokenizer(_directory(gguf_source, tmp_path, None))
    with pytest.raises(ValueError, match="no chat template"):
        tokenizer.apply_chat_template([{"role": "user", "content": "a"}])


def test_the_serving_process_imports_no_transformers(gguf_source):
    """Tokenizer, chat template, engine and service modules: transformers (and torch) stay out of the process."""
    code = (
        "import sys; from pathlib import Path; import genai_inference.__main__; "
        "from genai_inference.models import load_tokenizer; "
        f"t = load_tokenizer(Path({str(gguf_source.directory)!r})); "
        "t.apply_chat_template([{'role': 'user', 'content': 'hi'}], add_generation_prompt=True); t.decode(t('hi').input_ids); "
        "print(sorted(m for m in ('transformers', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stderr
