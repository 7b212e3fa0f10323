"""The engines: local ``KVEngine``s the scheduler drives (onnxruntime-gguf on the GGUF's own quantized weights,
torch, onnxruntime fp32/int8) and ``Backend``s that run requests themselves (llama.cpp, remote TGI/OpenAI).
The registry by name is :mod:`genai_inference.backends`."""
