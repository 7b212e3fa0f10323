"""The tokenizer service (genai.tokenizer.v1.TokenizerService)."""
