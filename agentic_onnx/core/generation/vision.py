"""Images for vision-language models: loading, prompt tags, token accounting, the generator.

onnxruntime-genai runs a vision-language model as three ONNX parts (vision encoder, embedding,
text decoder) behind `og.MultiModalProcessor`: the processor turns the prompt and the images into
named tensors (expanded input ids, pixel values...) and `generator.set_inputs` runs the whole
prompt at once. What differs per model type is the tag that marks an image in the prompt.

Callers put `IMAGE_MARKER` in a message's text where an image goes (`serve` does, for images in
earlier turns), or none at all: then every image goes first in the last user message. Users may
also write the model's own tags (`<|image_1|>`); either way the count must match the images.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from agentic_onnx.core.errors import PromptTooLongError, UsageError

if TYPE_CHECKING:
    from agentic_onnx.core.models.model_folder import ModelFolder

# `loaded` arguments below are core.generation.engine.LoadedModel: not imported, since the engine imports
# this module (one direction only).
LoadedModel = Any

IMAGE_MARKER = "\u2063<image>\u2063"  # invisible separators: never typed by accident
DEFAULT_MAX_IMAGE_PIXELS = 1280 * 28 * 28  # Qwen-type processors: at most ~1,280 image tokens
DEFAULT_IMAGE_TOKEN_BUDGET = 1024  # warn above this many tokens for one image

PHI_TYPES = ("phi3v", "phi4mm")
QWEN_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "fara")
QWEN_TAG = "<|vision_start|><|image_pad|><|vision_end|>"
_PHI_TAG_RE = re.compile(r"<\|image_(\d+)\|>")
_FORMATS = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"BM": "BMP"}


class ImageError(UsageError):
    """An image we cannot use: missing, unreadable, not an image, or too big for the context."""


class VisionNotSupportedError(UsageError):
    """Images were given to a model that takes only text (or of a vision type we do not know)."""


class ImageTooLargeError(PromptTooLongError):
    """The prompt with its image tokens does not fit in the context (checked before running)."""

    def __init__(self, prompt_tokens: int, image_tokens: int, context_length: int) -> None:
        super().__init__(prompt_tokens, context_length)
        self.message = (f"The prompt with its images is {prompt_tokens} tokens ({image_tokens} for "
                        f"the images) but the model's context holds {context_length}.")
        self.hint = "Use fewer or smaller images, or lower AGENTIC_ONNX_MAX_IMAGE_PIXELS."
        self.args = (self.message,)


@dataclass(frozen=True)
class ImageInput:
    """One image's encoded bytes (PNG, JPEG or BMP) and where it came from, for messages."""

    data: bytes = field(repr=False)
    label: str

    @property
    def format(self) -> str | None:
        return sniff_format(self.data)


def sniff_format(data: bytes) -> str | None:
    for magic, name in _FORMATS.items():
        if data.startswith(magic):
            return name
    return None


def image_from_bytes(data: bytes, label: str) -> ImageInput:
    """Check that `data` is an image format genai's processor decodes."""
    if not data:
        raise ImageError(f"The image {label} is empty.", "Pass a PNG, JPEG or BMP file.")
    if sniff_format(data) is None:
        raise ImageError(f"{label} is not a PNG, JPEG or BMP image.",
                         "Convert it to PNG or JPEG first.")
    return ImageInput(data, label)


def load_image(path: str, stdin: BinaryIO | None = None) -> ImageInput:
    """`--image PATH`; `-` reads one image from stdin."""
    if path == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        return image_from_bytes(stream.read(), "from stdin")
    file = Path(path).expanduser()
    if not file.is_file():
        what = "is a folder, not an image" if file.is_dir() else "does not exist"
        raise ImageError(f"The image {path!r} {what}.", "Check the path passed to --image.")
    try:
        data = file.read_bytes()
    except OSError as error:
        raise ImageError(f"Cannot read the image {path!r} ({error.strerror}).",
                         "Check the file's permissions.") from None
    return image_from_bytes(data, repr(path))


def tag_style(folder: ModelFolder) -> str:
    """`phi` or `qwen` for a vision model; a clear error for a text-only (or unknown) one."""
    if folder.model_type in PHI_TYPES:
        return "phi"
    if folder.model_type in QWEN_TYPES:
        return "qwen"
    has_vision = "vision" in _genai_model_section(folder.path)
    what = (f"of type {folder.model_type!r}, which this version cannot feed images to"
            if has_vision else "text-only")
    raise VisionNotSupportedError(
        f"{folder.name} is {what}: it cannot take images.",
        "Use a vision model (`agentic-onnx onnx models` marks them `vision`), or drop --image.")


def _genai_model_section(path: Path) -> dict:
    try:
        config = json.loads((path / "genai_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    model = config.get("model") if isinstance(config, dict) else None
    return model if isinstance(model, dict) else {}


def place_image_tags(messages: Sequence[dict[str, Any]], image_count: int,
                     style: str) -> list[dict[str, Any]]:
    """Messages with the model's image tags in place of the markers (or, with no markers and no
    tags typed by the user, all images first in the last user message); the count must match."""
    markers = sum(str(m.get("content") or "").count(IMAGE_MARKER) for m in messages)
    typed = sum(_count_typed_tags(str(m.get("content") or ""), style) for m in messages)
    result = [dict(m) for m in messages]
    if markers == 0 and typed == 0 and image_count:
        last_user = max((i for i, m in enumerate(result) if m.get("role") == "user"), default=None)
        if last_user is None:
            raise ImageError("Images need a user message to go with.", "Add a prompt.")
        result[last_user]["content"] = IMAGE_MARKER * image_count + str(result[last_user]["content"] or "")
        markers = image_count
    if markers + typed != image_count:
        raise ImageError(
            f"The prompt has {markers + typed} image tag(s) but {image_count} image(s) were given.",
            "Give one image per tag, or leave the tags out and the images go first.")
    if style == "phi":
        numbers = {int(n) for m in result for n in _PHI_TAG_RE.findall(str(m.get("content") or ""))}
        if numbers - set(range(1, image_count + 1)):
            raise ImageError(
                f"The prompt has the tag <|image_{max(numbers - set(range(1, image_count + 1)))}|> "
                f"but {image_count} image(s) were given.",
                "Number the tags <|image_1|> to <|image_N|>, one per image, or leave them out.")
    number = typed + 1 if style == "phi" else 0
    for message in result:
        text = str(message.get("content") or "")
        while IMAGE_MARKER in text:
            tag = f"<|image_{number}|>\n" if style == "phi" else QWEN_TAG
            text, number = text.replace(IMAGE_MARKER, tag, 1), number + 1
        if "content" in message:
            message["content"] = text
    return result


def _count_typed_tags(text: str, style: str) -> int:
    if style == "phi":
        return len(_PHI_TAG_RE.findall(text))
    return text.count("<|vision_start|>")


@dataclass
class VisionPrompt:
    """A prompt with its images, processed and counted, ready for `stream_vision`."""

    inputs: Any = field(repr=False)  # og.NamedTensors
    prompt_tokens: int
    image_tokens: list[int]
    warnings: list[str] = field(default_factory=list)


def prepare_vision_prompt(loaded: LoadedModel, messages: Sequence[dict[str, Any]],
                          images: Sequence[ImageInput], *,
                          token_budget: int = DEFAULT_IMAGE_TOKEN_BUDGET) -> VisionPrompt:
    """Tag, render and process the prompt; refuse it before any model runs if it cannot fit."""
    import onnxruntime_genai as og

    style = tag_style(loaded.folder)
    prompt = loaded.render_prompt(place_image_tags(messages, len(images), style))
    try:
        og_images = og.Images.open_bytes(*[image.data for image in images]) if images else None
        inputs = loaded.multimodal_processor()(prompt, images=og_images)
    except RuntimeError as error:
        raise ImageError(f"onnxruntime-genai could not process the image(s): {error}",
                         "Check that each file is a valid PNG or JPEG image.") from None
    prompt_tokens = int(inputs["input_ids"].as_numpy().shape[-1])
    per_image = _image_token_counts(inputs, len(images))
    context = loaded.folder.context_length
    if prompt_tokens >= context:
        raise ImageTooLargeError(prompt_tokens, sum(per_image), context)
    warnings = [f"Image {images[i].label} costs {count} tokens (budget {token_budget}); "
                "a smaller image (or a lower AGENTIC_ONNX_MAX_IMAGE_PIXELS) saves time and memory."
                for i, count in enumerate(per_image) if count > token_budget]
    return VisionPrompt(inputs, prompt_tokens, per_image, warnings)


def _image_token_counts(inputs: Any, image_count: int) -> list[int]:
    if image_count == 0:
        return []
    names = set(inputs.keys())
    for name in ("num_image_tokens", "num_img_tokens"):
        if name in names:
            counts = [int(c) for c in inputs[name].as_numpy().reshape(-1)]
            if len(counts) == image_count:
                return counts
            return [sum(counts) // image_count] * image_count
    return [0] * image_count


def vision_generator(loaded: LoadedModel, prepared: VisionPrompt, max_length: int,
                     options: Any) -> Any:
    """A generator that has consumed the whole multimodal prompt."""
    import onnxruntime_genai as og

    params = og.GeneratorParams(loaded.og_model)
    params.set_search_options(**loaded.search_options(max_length, options))
    generator = og.Generator(loaded.og_model, params)
    generator.set_inputs(prepared.inputs)
    return generator


# ------------------------------------------------------------------ the pixel cap
_PRIVATE_DIRS: list[str] = []


def capped_model_path(folder: ModelFolder, max_pixels: int | None) -> Path:
    """The folder to load: the store's own, or, for a Qwen-type model whose processor allows
    more pixels than `max_pixels`, a private folder (links to the store's files) with a capped
    copy of processor_config.json. The store is never edited."""
    if max_pixels is None or folder.model_type not in QWEN_TYPES:
        return folder.path
    source = folder.path / "processor_config.json"
    try:
        config = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return folder.path
    if not _cap_pixels(config, max_pixels):
        return folder.path
    private = Path(tempfile.mkdtemp(prefix="agentic-onnx-vision-"))
    if not _PRIVATE_DIRS:
        atexit.register(remove_private_folders)
    _PRIVATE_DIRS.append(str(private))
    for item in folder.path.iterdir():
        if item.name != source.name:
            (private / item.name).symlink_to(item.resolve())
    (private / source.name).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return private


def _cap_pixels(config: dict, max_pixels: int) -> bool:
    """Lower every Resize's max_pixels to `max_pixels`; True when anything changed."""
    changed = False
    transforms = (config.get("processor") or {}).get("transforms") or []
    for transform in transforms:
        operation = transform.get("operation") or {}
        attrs = operation.get("attrs")
        if operation.get("type") != "Resize" or not isinstance(attrs, dict):
            continue
        if int(attrs.get("max_pixels", sys.maxsize)) > max_pixels:
            attrs["max_pixels"] = max_pixels
            attrs["min_pixels"] = min(int(attrs.get("min_pixels", 0)), max_pixels)
            changed = True
    return changed


def remove_private_folders() -> None:
    """Delete the private folders made by `capped_model_path` (at exit, and in tests)."""
    while _PRIVATE_DIRS:
        shutil.rmtree(_PRIVATE_DIRS.pop(), ignore_errors=True)


def max_pixels_from_env() -> int | None:
    """AGENTIC_ONNX_MAX_IMAGE_PIXELS overrides the default cap (0 turns it off)."""
    raw = os.environ.get("AGENTIC_ONNX_MAX_IMAGE_PIXELS")
    if raw is None:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"AGENTIC_ONNX_MAX_IMAGE_PIXELS={raw!r} is not a number.",
                         "Set it to a pixel count, or 0 for no cap.") from None
    return value or None
