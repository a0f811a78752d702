"""The streaming engine over onnxruntime-genai.

`load_model` opens a checked model folder on the chosen execution provider (cached per process,
so `chat` and `serve` load once); `LoadedModel.stream` applies the model's chat template, runs
the generator loop and yields the typed events of `core.generation.events`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from agentic_onnx.core.errors import GenerationError, PromptTooLongError, UsageError
from agentic_onnx.core.generation.events import Finish, FirstToken, StreamEvent, TextDelta, Usage
from agentic_onnx.core.machine.execution_provider import (
    EP_LABELS,
    available_execution_providers,
    candidates_for,
    choose_execution_provider,
)
from agentic_onnx.core.models.model_folder import ModelFolder
from agentic_onnx.core.generation.options import GenerationOptions
from agentic_onnx.core.generation.stop_strings import StopStringMatcher

if TYPE_CHECKING:
    from pathlib import Path

    from agentic_onnx.core.models.adapters import AdapterSet
    from agentic_onnx.core.answers.structured import Guidance
    from agentic_onnx.core.generation.vision import ImageInput, VisionPrompt

Message = dict[str, Any]


@dataclass
class LoadedModel:
    """A model ready to generate. Not thread-safe: one generation at a time."""

    folder: ModelFolder
    execution_provider: str
    threads: int
    load_s: float
    og_model: Any = field(repr=False)
    tokenizer: Any = field(repr=False)
    warnings: list[str] = field(default_factory=list)
    processor: Any = field(default=None, repr=False)  # og.MultiModalProcessor, made on first use
    # LoRA adapters loaded into og_model (core.models.adapters), shared by the copies load_model returns
    adapters: AdapterSet = field(default_factory=lambda: _adapter_set(), repr=False)
    device_id: int | None = None  # the GPU it was loaded on (--device-id); None: the EP's default

    def bind_device(self) -> None:
        """Make this model's GPU the calling thread's current CUDA device. genai's own kernels
        (sampling, KV-cache copies) run on the current device, which is per thread: a thread
        other than the loading one (a server worker) calls this before it generates. Cheap, and
        a no-op without a device id or off CUDA."""
        if self.device_id is not None and self.execution_provider == "cuda":
            import onnxruntime_genai as og

            og.set_current_gpu_device_id(self.device_id)

    def multimodal_processor(self) -> Any:
        """The model's image processor (core.generation.vision), created once."""
        if self.processor is None:
            self.processor = self.og_model.create_multimodal_processor()
        return self.processor

    def render_prompt(self, messages: Sequence[Message],
                      tools: Sequence[dict[str, Any]] | None = None) -> str:
        """The model's own chat template applied to `messages`, ready for the assistant's turn.
        `tools` (OpenAI function format) go to the template's `tools` variable (core.answers.tools
        passes them only to templates that use it)."""
        try:
            if tools:
                return self.tokenizer.apply_chat_template(
                    json.dumps(list(messages)), tools=json.dumps(list(tools)),
                    add_generation_prompt=True)
            return self.tokenizer.apply_chat_template(
                json.dumps(list(messages)), add_generation_prompt=True
            )
        except Exception as error:  # noqa: BLE001 - genai raises RuntimeError for template issues
            raise GenerationError(
                f"Could not apply the chat template of {self.folder.name} ({error}).",
                "Check the model's tokenizer_config.json chat_template.",
            ) from None

    def encode(self, text: str) -> list[int]:
        return [int(token) for token in self.tokenizer.encode(text)]

    def generate_tokens(
        self, prompt_tokens: Sequence[int], options: GenerationOptions,
        guidance: Guidance | None = None, adapter: Path | None = None,
    ) -> Iterator[int]:
        """The bare decode loop: yields each new token id until EOS or the length limit.
        With `guidance` (core.answers.structured), every token is constrained by that grammar; with
        `adapter` (an `.onnx_adapter` file, core.models.adapters), the LoRA adapter is applied."""
        import onnxruntime_genai as og

        self.bind_device()
        params = og.GeneratorParams(self.og_model)
        params.set_search_options(**self._search_options(len(prompt_tokens), options))
        if guidance is None:
            generator = og.Generator(self.og_model, params)
        else:
            generator = _guided_generator(og, self.og_model, params, guidance)
        if adapter is not None:
            self.adapters.activate(self.og_model, generator, adapter)
        generator.append_tokens(list(prompt_tokens))
        yield from _decode(generator)

    def stream(self, messages: Sequence[Message], options: GenerationOptions,
               guidance: Guidance | None = None,
               tools: Sequence[dict[str, Any]] | None = None,
               images: Sequence[ImageInput] | VisionPrompt | None = None,
               adapter: Path | None = None) -> Iterator[StreamEvent]:
        """Generate a reply to `messages`, yielding text deltas, then usage and finish.
        `guidance` constrains the tokens; `tools` are rendered by the chat template (turning
        the text of a tool call into ToolCallDelta events is core.answers.tools' job). `images` (or a
        prompt core.generation.vision already prepared from them) go through the model's processor."""
        self.bind_device()
        if images:
            if adapter is not None:
                raise UsageError("Images cannot be combined with --adapter yet.", "Drop one of them.")
            yield from self._stream_vision(messages, options, images, guidance, tools)
            return
        prompt_tokens = self.encode(self.render_prompt(messages, tools))
        yield from self._events(self.generate_tokens(prompt_tokens, options, guidance, adapter),
                                len(prompt_tokens), self._max_length(len(prompt_tokens), options),
                                options)

    def _stream_vision(self, messages: Sequence[Message], options: GenerationOptions,
                       images: Sequence[ImageInput] | VisionPrompt, guidance: Guidance | None,
                       tools: Sequence[dict[str, Any]] | None) -> Iterator[StreamEvent]:
        from agentic_onnx.core.generation import vision

        if guidance is not None or tools:
            raise UsageError("Images cannot be combined with --schema, --json-mode or --tools yet.",
                             "Drop one of them.")
        prepared = (images if isinstance(images, vision.VisionPrompt)
                    else vision.prepare_vision_prompt(self, messages, images))
        max_length = self._max_length(prepared.prompt_tokens, options)
        generator = vision.vision_generator(self, prepared, max_length, options)
        yield from self._events(_decode(generator), prepared.prompt_tokens, max_length, options)

    def _events(self, tokens: Iterator[int], prompt_length: int, max_length: int,
                options: GenerationOptions) -> Iterator[StreamEvent]:
        """Text deltas (stop strings and EOS applied), then usage and finish."""
        reply = ReplyEvents(self, prompt_length, max_length, options)
        for token in tokens:
            yield from reply.feed(token)
            if reply.done:
                break
        yield from reply.finish()

    def eos_ids(self) -> set[int]:
        """The token ids that end a reply: the config's and the tokenizer's."""
        return set(self.folder.eos_token_ids) | set(self._tokenizer_eos())

    def _tokenizer_eos(self) -> list[int]:
        try:
            return [int(i) for i in self.tokenizer.eos_token_ids]
        except Exception:  # noqa: BLE001 - older builds lack the property
            return []

    def _max_length(self, prompt_length: int, options: GenerationOptions) -> int:
        context = self.folder.context_length
        if prompt_length >= context:
            raise PromptTooLongError(prompt_length, context)
        return min(prompt_length + options.max_tokens, context)

    def _search_options(self, prompt_length: int, options: GenerationOptions) -> dict[str, Any]:
        return self.search_options(self._max_length(prompt_length, options), options)

    def search_options(self, max_length: int, options: GenerationOptions) -> dict[str, Any]:
        """genai search options for `options`, with the sequence capped at `max_length` tokens
        (`core.generation.conversation` keeps one generator for a whole session, so it passes the context)."""
        search: dict[str, Any] = {
            "max_length": max_length,
            "do_sample": not options.greedy,
        }
        if not options.greedy:
            search.update(temperature=options.temperature, top_p=options.top_p,
                          top_k=options.top_k)
        if options.seed is not None:
            search["random_seed"] = options.seed
        return search


class ReplyEvents:
    """One reply's events from its tokens, one token at a time: FirstToken, text deltas (stop
    strings and EOS applied), then (`finish`) usage and finish. `done` once the reply ended
    (EOS, a stop string, or its length)."""

    def __init__(self, model: LoadedModel, prompt_length: int, max_length: int,
                 options: GenerationOptions) -> None:
        self._decoder = model.tokenizer.create_stream()
        self._stops = StopStringMatcher(options.stop)
        self._eos = model.eos_ids()
        self.prompt_length, self.max_length = prompt_length, max_length
        self.completion_tokens, self.reason, self._stopped, self.done = 0, "length", False, False

    def feed(self, token: int) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        self.completion_tokens += 1
        if self.completion_tokens == 1:
            events.append(FirstToken(prompt_tokens=self.prompt_length))
        if token in self._eos:
            self.reason, self.done = "stop", True
            return events
        text, self._stopped = self._stops.feed(self._decoder.decode(token))
        if text:
            events.append(TextDelta(text))
        if self._stopped:
            self.reason, self.done = "stop", True
        elif self.prompt_length + self.completion_tokens >= self.max_length:
            self.done = True
        return events

    def finish(self) -> list[StreamEvent]:
        rest = "" if self._stopped else self._stops.flush()
        return [*([TextDelta(rest)] if rest else []),
                Usage(prompt_tokens=self.prompt_length, completion_tokens=self.completion_tokens),
                Finish(self.reason, stop_sequence=self._stops.matched)]  # type: ignore[arg-type]


def _adapter_set() -> AdapterSet:
    from agentic_onnx.core.models.adapters import AdapterSet

    return AdapterSet()


def _decode(generator: Any) -> Iterator[int]:
    """Each new token id of a generator that has its prompt, until EOS or the length limit."""
    while not generator.is_done():
        generator.generate_next_token()
        yield int(generator.get_next_tokens()[0])


def _guided_generator(og: Any, og_model: Any, params: Any, guidance: Guidance) -> Any:
    """A generator constrained by `guidance`; a grammar llguidance cannot build is a usage error
    (it surfaces when the generator is created, not in set_guidance)."""
    from agentic_onnx.core.answers.structured import unsupported_schema

    params.set_guidance(guidance.kind, guidance.data, False)
    try:
        return og.Generator(og_model, params)
    except RuntimeError as error:
        if "grammar" not in str(error).lower():
            raise
        raise unsupported_schema(error) from None


_LOADED: dict[tuple[str, str, int, int | None, int | None], LoadedModel] = {}

# The provider option that picks a GPU, per EP that has one (genai passes the CUDA options to
# onnxruntime's CUDA EP; its DirectML EP reads `device_index` when it creates its device).
DEVICE_OPTIONS = {"cuda": "device_id", "dml": "device_index"}


@dataclass(frozen=True)
class LoadStart:
    """A model is about to load (what a loading indicator shows)."""

    name: str
    size_bytes: int
    execution_provider: str


# Whoever wants to show that a model is loading (the CLI, on a terminal) sets this to a factory
# of context managers entered around each real load (never for a cached model). A context
# variable, so library callers and server threads that set nothing see nothing.
LOAD_OBSERVER: ContextVar[Callable[[LoadStart], AbstractContextManager[object]] | None] = \
    ContextVar("load_observer", default=None)


def load_model(
    folder: ModelFolder,
    execution_provider: str = "auto",
    threads: int | None = None,
    *,
    device_id: int | None = None,
    available: Callable[[Iterable[str]], list[str]] = available_execution_providers,
    max_image_pixels: int | None | Literal["default"] = "default",
) -> LoadedModel:
    """Load `folder` on the chosen EP, once per process. In `auto`, a GPU EP that fails to
    create its session falls back to the CPU with a warning; an explicit EP never does.
    `device_id` picks the GPU of a CUDA or DirectML EP (None: the EP's default, GPU 0); on
    another EP only None or 0 is accepted. `max_image_pixels` caps a Qwen-type vision model's
    images (core.generation.vision; default: the AGENTIC_ONNX_MAX_IMAGE_PIXELS environment
    variable, else core.generation.vision's default)."""
    from agentic_onnx.core.machine.hardware import default_threads
    from agentic_onnx.core.generation.vision import max_pixels_from_env

    check_device_id(device_id)
    threads = threads or default_threads()
    cap = max_pixels_from_env() if max_image_pixels == "default" else max_image_pixels
    requested = execution_provider.lower()
    choice = choose_execution_provider(requested, folder,
                                       available(candidates_for(requested, folder)))
    check_device_id(device_id, choice.provider)
    device_id = device_id if choice.provider in DEVICE_OPTIONS else None  # 0 on the CPU: the CPU
    key = (str(folder.path), choice.provider, threads, cap, device_id)
    if key in _LOADED:
        cached = _LOADED[key]
        return LoadedModel(**{**cached.__dict__, "load_s": 0.0, "warnings": []})
    warnings = [choice.warning] if choice.warning else []
    try:
        loaded = _create(folder, choice.provider, threads, cap, device_id)
    except GenerationError as error:
        if not choice.may_fall_back_to_cpu:
            raise
        warnings.append(f"{EP_LABELS[choice.provider]} failed to start ({error.message}); "
                        "falling back to the CPU.")
        loaded = _create(folder, "cpu", threads, cap)
    loaded.warnings = warnings
    _LOADED[(str(folder.path), loaded.execution_provider, threads, cap, device_id)] = loaded
    return loaded


def check_device_id(device_id: int | None, provider: str | None = None) -> None:
    """A usage error for a negative device id, or (with the chosen `provider`) for a GPU other
    than 0 on an EP that cannot pick one (the CPU, WebGPU)."""
    if device_id is None:
        return
    if device_id < 0:
        raise UsageError(f"Invalid value for --device-id: {device_id} is negative.",
                         "GPUs are numbered from 0 (`agentic-onnx onnx info` lists them).")
    if provider is not None and provider not in DEVICE_OPTIONS and device_id != 0:
        raise UsageError(f"--device-id {device_id} cannot be used on {EP_LABELS[provider]}.",
                         "--device-id applies to GPU execution providers (-e cuda or -e dml).")


def _create(folder: ModelFolder, provider: str, threads: int,
            max_image_pixels: int | None = None, device_id: int | None = None) -> LoadedModel:
    import onnxruntime_genai as og

    og.disable_telemetry_events()
    observer = LOAD_OBSERVER.get()
    showing = observer(LoadStart(folder.name, weights_size(folder), provider)) if observer \
        else nullcontext()
    with showing:
        return _create_session(og, folder, provider, threads, max_image_pixels, device_id)


def weights_size(folder: ModelFolder) -> int:
    """Bytes of the model's ONNX files: what loading reads, and about what it keeps in memory."""
    return sum(path.stat().st_size for path in folder.path.iterdir()
               if path.is_file() and (path.suffix == ".onnx" or path.name.endswith(".onnx.data")))


def _create_session(og: Any, folder: ModelFolder, provider: str, threads: int,
                    max_image_pixels: int | None, device_id: int | None = None) -> LoadedModel:
    from agentic_onnx.core.generation.vision import capped_model_path

    started = time.perf_counter()
    try:
        config = og.Config(str(capped_model_path(folder, max_image_pixels)))
        if provider == "cpu":
            config.clear_providers()
        elif provider not in folder.variant_providers:
            config.clear_providers()
            config.append_provider(provider)
        if device_id is not None:
            _select_device(og, config, provider, device_id)
        config.overlay(json.dumps(
            {"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}
        ))
        og_model = og.Model(config)
        tokenizer = og.Tokenizer(og_model)
        tokenizer.encode("")  # the tokenizer's one-time setup (60-110 ms) belongs to loading
    except Exception as error:  # noqa: BLE001 - genai raises RuntimeError/OSError with its reason
        raise GenerationError(
            f"onnxruntime-genai could not load {folder.name} on {EP_LABELS[provider]}: {error}",
            "Check the model files, or try another --execution-provider "
            "(`agentic-onnx onnx info` shows what this install can use).",
        ) from None
    return LoadedModel(folder, provider, threads, time.perf_counter() - started, og_model,
                       tokenizer, device_id=device_id)


def _select_device(og: Any, config: Any, provider: str, device_id: int) -> None:
    """The GPU a session is created on: the EP's provider option; for CUDA also the loading
    thread's current device, which genai's own buffers and kernels use (its provider option
    alone leaves them on GPU 0). Unverified on a machine with several GPUs (docs/serving.md)."""
    if provider == "cuda":
        og.set_current_gpu_device_id(device_id)
    config.set_provider_option(provider, DEVICE_OPTIONS[provider], str(device_id))


def forget_model(loaded: LoadedModel) -> None:
    """Drop one model from the process's cache (the service unloading it): once its last user
    lets go, onnxruntime-genai frees it."""
    for key in [key for key, cached in _LOADED.items() if cached.og_model is loaded.og_model]:
        del _LOADED[key]


def clear_model_cache() -> None:
    """Forget loaded models (tests, and `serve` when it unloads)."""
    from agentic_onnx.core.generation.vision import remove_private_folders

    _LOADED.clear()
    remove_private_folders()
