"""Generation options, validated once for every provider and interface."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentic_onnx.core.errors import UsageError

DEFAULT_MAX_TOKENS = 512


class GenerationOptions(BaseModel):
    """What a caller may ask of a generation. `temperature == 0` means greedy decoding."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(DEFAULT_MAX_TOKENS, ge=1, le=1_000_000, description="Most new tokens.")
    temperature: float = Field(0.0, ge=0.0, le=5.0, description="0 is greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(50, ge=1, le=100_000, description="Sample among the k most likely tokens.")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="Random seed for sampling.")
    stop: tuple[str, ...] = Field((), description="Strings that end generation when produced.")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def build_options(**values: object) -> GenerationOptions:
    """Validate user-supplied options; a bad value is a one-line usage error naming the option."""
    given = {name: value for name, value in values.items() if value is not None}
    if "stop" in given:
        given["stop"] = tuple(s for s in given["stop"] if s)  # type: ignore[union-attr]
    try:
        return GenerationOptions(**given)
    except ValidationError as error:
        first = error.errors()[0]
        option = "--" + str(first["loc"][0]).replace("_", "-")
        raise UsageError(
            f"Invalid value for {option}: {first['msg']}.",
            "See `agentic-onnx run --help` for the allowed range.",
        ) from None
