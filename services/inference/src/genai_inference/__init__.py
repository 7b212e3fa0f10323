"""The inference service (genai.inference.v1.InferenceService)."""
