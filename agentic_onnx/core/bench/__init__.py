"""`onnx benchmark`: runs, peak memory, statistics."""
