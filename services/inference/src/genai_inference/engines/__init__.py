"""The engines: local ``KVEngine``s the scheduler drives (torch, onnxruntime) and ``Backend``s that run
requests themselves (llama.cpp, remote TGI/OpenAI). The registry by name is :mod:`genai_inference.backends`."""
