"""`python -m agentic_onnx` runs the same CLI as the `agentic-onnx` console script."""

from agentic_onnx.cli.app import main

if __name__ == "__main__":
    main()
