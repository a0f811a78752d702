"""The exception tree. Each error knows its exit code, its HTTP status (what `serve` answers
when a request ends in it) and the one line that says what to do next."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """Documented exit codes (README "Exit codes"); scripts rely on them, so they never change."""

    OK = 0
    RUNTIME_ERROR = 1
    USAGE_ERROR = 2
    MODEL_NOT_FOUND = 3
    PROVIDER_ERROR = 4
    EXECUTION_PROVIDER_UNAVAILABLE = 5
    THRESHOLD_VIOLATED = 6
    VERIFICATION_FAILED = 7
    INTERRUPTED = 130


class AgenticError(Exception):
    """Base of every error we expect; anything else is a bug and keeps its traceback."""

    exit_code: ExitCode = ExitCode.RUNTIME_ERROR
    http_status: int = 500  # the server's fault unless a subclass says the request's
    api_code: str | None = None  # the OpenAI error `code` a server gives it, when one is known

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # Facts a script needs beside the message (`attempts` of a routed request, a partial
        # result): merged into the `--json` error object next to `error`.
        self.details: dict[str, Any] = {}

    def one_line(self) -> str:
        """The message and the next step, on one line."""
        if not self.hint:
            return self.message
        stop = "" if self.message.rstrip().endswith((".", "!", "?", ":")) else "."
        return f"{self.message}{stop} {self.hint}"

    def to_json(self) -> dict[str, Any]:
        """The `--json` error object: `{"error": {...}}` plus the error's details."""
        error = {"message": self.message, "hint": self.hint, "exit_code": int(self.exit_code),
                 "type": type(self).__name__}
        return {**self.details, "error": error}


class UsageError(AgenticError):
    """Bad input from the user: an empty task, an option out of range."""

    exit_code = ExitCode.USAGE_ERROR
    http_status = 400


class PromptTooLongError(UsageError):
    """The prompt does not fit in the model's context (the router treats this as overflow)."""

    api_code = "context_length_exceeded"  # OpenAI's code for it

    def __init__(self, prompt_tokens: int, context_length: int) -> None:
        super().__init__(
            f"The prompt is {prompt_tokens} tokens but the model's context holds {context_length}.",
            "Shorten the prompt or use a model with a longer context.",
        )
        self.prompt_tokens = prompt_tokens
        self.context_length = context_length


class ModelNotFoundError(AgenticError):
    """`--model` names nothing we can find."""

    exit_code = ExitCode.MODEL_NOT_FOUND
    http_status = 404


class InvalidModelError(AgenticError):
    """A model folder exists but is not a usable onnxruntime-genai model."""

    exit_code = ExitCode.MODEL_NOT_FOUND
    http_status = 500


class ExecutionProviderUnavailableError(AgenticError):
    """An explicitly requested execution provider cannot be used with this install or machine."""

    exit_code = ExitCode.EXECUTION_PROVIDER_UNAVAILABLE


class GenerationError(AgenticError):
    """onnxruntime-genai failed while loading or generating."""

    exit_code = ExitCode.RUNTIME_ERROR


class NotInstalledError(ModelNotFoundError):
    """A known model (catalog id, alias or custom hub model) that is not in the store yet.
    Carries the command that installs it, so the CLI can offer to run it."""

    def __init__(self, model_id: str, reason: str | None = None) -> None:
        self.model_id = model_id
        self.download_command = f"agentic-onnx onnx download {model_id}"
        prefix = f"{reason} " if reason else ""
        super().__init__(f"{prefix}Model {model_id!r} is not installed.",
                         f"Run `{self.download_command}`.")


class DownloadError(AgenticError):
    """The hub could not be reached or refused a transfer; what was fetched is kept for a rerun."""

    exit_code = ExitCode.PROVIDER_ERROR
    http_status = 502


class InsufficientDiskError(AgenticError):
    """Not enough free space in the store for the files still to download."""

    exit_code = ExitCode.RUNTIME_ERROR


class VerificationError(AgenticError):
    """A file's SHA-256 (or size) differs from what the hub or the manifest says."""

    exit_code = ExitCode.VERIFICATION_FAILED


class StoreError(AgenticError):
    """The store itself is in a state we refuse to touch (an id or path that escapes it)."""

    exit_code = ExitCode.USAGE_ERROR
    http_status = 400


class InvalidModelNameError(UsageError, StoreError):
    """A model name that breaks the one name rule (core/models/names.py): refused by every command.
    Bad input (a UsageError) that would also leave the store (a StoreError); exit 2 either way."""


class LocalFileError(AgenticError):
    """A file we keep under the agentic-flow home (the store, the registry, the usage log)
    cannot be read or written: a read-only or full disk, a permission, a corrupt database."""

    exit_code = ExitCode.RUNTIME_ERROR


class ModelTestFailedError(AgenticError):
    """`onnx test`: the model loaded and ran but produced no text (a broken or unusable model)."""

    exit_code = ExitCode.MODEL_NOT_FOUND
    http_status = 500


class ThresholdViolatedError(AgenticError):
    """`onnx benchmark`: a CI threshold (--min-gen-tps, --max-ttft-ms, --max-rss-mb) was missed."""

    exit_code = ExitCode.THRESHOLD_VIOLATED


class WrongModelKindError(UsageError):
    """A chat model named where an embedding model is needed, or the other way round."""

    def __init__(self, model: str, kind: str, wanted: str) -> None:
        command = "`agentic-onnx embed`" if kind == "embedding" else "`run`, `chat` or `serve`"
        super().__init__(
            f"{model!r} is {'an' if kind == 'embedding' else 'a'} {kind} model, not {'an' if wanted == 'embedding' else 'a'} {wanted} model.",
            f"Use it with {command}; `agentic-onnx onnx models` shows each model's kind.")
        self.model, self.kind, self.wanted = model, kind, wanted


class ImportRefusedError(UsageError):
    """`onnx import`: a source the model builder cannot convert (an unsupported architecture, a
    quantized GGUF, no config.json), refused before anything is built."""


class MissingExtraError(AgenticError):
    """`onnx import` needs the converter's own dependencies (torch, transformers, gguf), which
    the base install leaves out; the hint is the exact install command."""

    exit_code = ExitCode.RUNTIME_ERROR


class ConversionError(AgenticError):
    """The model builder failed (or ran out of memory); its log stays in the partial folder."""

    exit_code = ExitCode.RUNTIME_ERROR
