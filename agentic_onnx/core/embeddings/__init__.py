"""Text embeddings on ONNX Runtime: sentence-embedding encoders (BERT-style ONNX exports) run with
`onnxruntime` and tokenized with `tokenizers`; no torch. onnxruntime-genai runs decoders only,
so this is the one place that uses onnxruntime directly. See docs/embeddings.md.

`folder.py` says what a model folder holds (graph, tokenizer, pooling, size limits), `pooling.py`
turns token states into vectors, `engine.py` runs batches, `resolve.py` turns `--model X` into
a folder, `batcher.py` gathers concurrent server requests into shared batches.
"""
