"""agentic-onnx: private, cost-free, fast local LLM inference on ONNX Runtime GenAI."""

__version__ = "0.1.0"
