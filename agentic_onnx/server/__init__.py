"""The OpenAI- and Anthropic-compatible local server behind `agentic-onnx serve`.

Imported only by `serve` (and its tests): Starlette and uvicorn stay out of every other command.
"""
