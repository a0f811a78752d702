"""`onnx import`: checkpoints, hub repos and GGUF files converted by the genai builder."""
