"""Generation engines behind one protocol: vLLM (CUDA or CPU) and transformers."""
