"""`python -m agentic_onnx` runs the same CLI as the `agentic-onnx` console script."""

import sys

from agentic_onnx.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
