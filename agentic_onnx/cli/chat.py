"""`agentic-onnx chat`: an interactive multi-turn session on a local model.

The model's KV cache is kept between turns (core.generation.conversation), so each turn feeds the model
only its own tokens. Line editing and history come from the stdlib `readline` on a terminal;
piped stdin is read line by line (scripts and tests). Ctrl-C stops the answer, not the session;
EOF (Ctrl-D) or /exit ends it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

from agentic_onnx.cli import output
from agentic_onnx.cli.options import (
    AdapterOpt,
    DeviceIdOpt,
    ExecutionProviderOpt,
    MaxTokensOpt,
    ModelOpt,
    NoServiceOpt,
    SeedOpt,
    StopOpt,
    SystemOpt,
    TemperatureOpt,
    ThreadsOpt,
    TopKOpt,
    TopPOpt,
    YesOpt,
)

PROMPT = ">>> "
HISTORY_LENGTH = 1000
HELP = """Commands:
  /help          this list
  /exit          end the session (Ctrl-D does too)
  /clear         forget the conversation, keep the system prompt
  /system [TEXT] show the system prompt, or set it to TEXT
  /stats         tokens, KV-cache reuse, TTFT and tokens/s of the last answer
  /save FILE     write the transcript as JSON
  /image PATH    attach an image (PNG, JPEG, BMP) to your next message (vision models);
                 while the conversation holds an image, each turn reprocesses the whole
                 history (the kept KV cache is reset); /clear drops the images
Ctrl-C stops an answer; the session goes on."""


def chat_command(
    model: ModelOpt = None,
    adapter: AdapterOpt = None,
    system: SystemOpt = None,
    max_tokens: MaxTokensOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    top_k: TopKOpt = None,
    seed: SeedOpt = None,
    stop: StopOpt = None,
    execution_provider: ExecutionProviderOpt = "auto",
    threads: ThreadsOpt = None,
    device_id: DeviceIdOpt = None,
    yes: YesOpt = False,
    no_service: NoServiceOpt = False,
) -> None:
    """Chat with a local model; the KV cache is kept between turns (/help lists the commands)."""
    from agentic_onnx.cli.loading_view import shown_while_loading
    from agentic_onnx.cli.store_commands import resolve_for_run
    from agentic_onnx.core.generation.conversation import Conversation
    from agentic_onnx.core.generation.engine import load_model
    from agentic_onnx.core.generation.options import build_options

    options = build_options(max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                            top_k=top_k, seed=seed, stop=stop)
    from agentic_onnx.router.local_settings import local_settings

    from agentic_onnx.router.service import service_for

    out = output.current()
    state = service_for(not no_service, execution_provider, threads, device_id)
    if state is not None:
        from agentic_onnx.router.remote_conversation import RemoteConversation

        conversation: Any = RemoteConversation(state, resolve_for_run(model, yes), system,
                                               on_notice=out.warning, adapter=adapter)
        out.note(f"Using the resident service at {state.url}.")
    else:
        settings = local_settings(execution_provider, threads, on_notice=out.warning,
                                  device_id=device_id)
        with shown_while_loading():
            loaded = load_model(resolve_for_run(model, yes), settings.execution_provider,
                                settings.threads, device_id=settings.device_id)
        for message in loaded.warnings:
            out.warning(message)
        conversation = Conversation(loaded, system, on_notice=out.warning, adapter=adapter)
    ChatSession(conversation, options).run()


class ChatSession:
    """The read-answer loop. Holds the last answer's Response for /stats."""

    def __init__(self, conversation: Any, options: Any) -> None:
        self.conversation = conversation
        self.options = options
        self.last_response: Any = None
        self.pending_images: list[Any] = []  # core.generation.vision.ImageInput, for the next message
        self._interactive = sys.stdin.isatty()
        self.out = output.current()

    def run(self) -> None:
        model = self.conversation.model
        self.out.note(f"Chatting with {model.folder.name} ({model.folder.context_length} tokens "
                      "of context). /help lists the commands; Ctrl-D exits.")
        history = _start_history() if self._interactive else None
        try:
            self._loop()
        finally:
            if history is not None:
                _save_history(history)

    def _loop(self) -> None:
        while True:
            try:
                line = self._read_line()
            except EOFError:
                if self._interactive:
                    self.out.text("\n")
                return
            except KeyboardInterrupt:  # at the prompt: drop the line, keep the session
                self.out.text("\n")
                continue
            text = line.strip()
            if not text:
                continue
            if text.startswith("/"):
                if self.command(text) == "exit":
                    return
                continue
            self.answer(text)

    def _read_line(self) -> str:
        if self._interactive:
            return input(PROMPT)
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line

    def answer(self, text: str) -> None:
        """Stream the answer to `text`; Ctrl-C stops it and keeps what was shown."""
        from agentic_onnx.core.errors import AgenticError
        from agentic_onnx.core.generation.events import TextDelta
        from agentic_onnx.core.generation.response import Response
        from agentic_onnx.router.local_usage import log_local

        from agentic_onnx.core.generation.vision import ImageError, ImageTooLargeError

        model = self.conversation.model
        images, self.pending_images = self.pending_images, []
        try:
            events = self.conversation.send(text, self.options, images=images)
        except (ImageError, ImageTooLargeError) as error:  # the turn is not kept; the session is
            self.out.warning(error.one_line())
            return
        response = Response(events, "onnx", model.folder.name,
                            execution_provider=model.execution_provider)
        self.last_response = response
        iterator = iter(response)
        view = self.out.stream()
        outcome = "ok"
        try:
            with view:
                for event in iterator:
                    if isinstance(event, TextDelta):
                        view.add(event.text)
        except KeyboardInterrupt:
            outcome = "interrupted"
            iterator.close()
            events.close()  # the partial answer joins the history, as the user saw it
            self.out.note("Stopped.")
        except AgenticError as error:
            log_local("chat", response, "error", error.one_line(), on_failure=self.out.warning)
            raise
        log_local("chat", response, outcome, on_failure=self.out.warning)

    def command(self, line: str) -> str | None:
        """Run a slash command; returns "exit" to end the session."""
        name, _, argument = line.partition(" ")
        argument = argument.strip()
        if name in ("/exit", "/quit", "/bye"):
            return "exit"
        if name == "/help":
            self.out.note(HELP)
        elif name == "/clear":
            self.conversation.clear()
            self.out.note("Cleared the conversation (the system prompt is kept).")
        elif name == "/system":
            self._system(argument)
        elif name == "/stats":
            self._stats()
        elif name == "/save":
            self._save(argument)
        elif name == "/image":
            self._attach(argument)
        else:
            self.out.warning(f"Unknown command {name}. /help lists the commands.")
        return None

    def _attach(self, path: str) -> None:
        """`/image PATH`: checked now (file, format, a vision model), sent with the next message."""
        from agentic_onnx.core.errors import UsageError
        from agentic_onnx.core.generation.vision import load_image, tag_style

        if not path:
            attached = ", ".join(image.label for image in self.pending_images) or "none"
            self.out.note(f"Attached for the next message: {attached}. Say which: /image PATH.")
            return
        try:
            tag_style(self.conversation.model.folder)
            if path == "-":
                raise UsageError("/image cannot read stdin: it carries the chat.", "Give a file path.")
            self.pending_images.append(load_image(path))
        except UsageError as error:
            self.out.warning(error.one_line())
            return
        self.out.note(f"Attached {self.pending_images[-1].label} ({len(self.pending_images)} "
                      "for the next message).")

    def _system(self, text: str) -> None:
        if not text:
            self.out.note(f"System prompt: {self.conversation.system or '(none)'}")
            return
        self.conversation.set_system(text)
        self.out.note("System prompt set.")

    def _stats(self) -> None:
        from agentic_onnx.cli.render import key_value_table

        turn = self.conversation.last
        if turn is None or self.last_response is None:
            self.out.note("No answer yet.")
            return
        timings = self.last_response.timings
        context = self.conversation.model.folder.context_length
        rows = [
            ("prompt tokens", f"{turn.prompt_tokens} ({turn.reused_tokens} reused from the KV "
                              f"cache, {turn.appended_tokens} new)"),
            ("completion tokens", str(turn.completion_tokens)),
            ("finish reason", str(turn.finish_reason)),
            ("time to first token", _ms(timings.ttft_ms)),
            ("decode rate", _rate(timings.decode_tokens_per_s)),
            ("context used", f"{turn.prompt_tokens + turn.completion_tokens} of {context} tokens"),
        ]
        if turn.dropped_messages:
            rows.append(("dropped messages", str(turn.dropped_messages)))
        self.out.table(key_value_table("Last answer", rows))

    def _save(self, argument: str) -> None:
        if not argument:
            self.out.warning("Say where: /save FILE.")
            return
        path = Path(argument).expanduser()
        try:
            path.write_text(json.dumps(self.conversation.to_json(), indent=2, ensure_ascii=False)
                            + "\n", encoding="utf-8")
        except OSError as error:
            self.out.warning(f"Could not write {path}: {error.strerror or error}.")
            return
        self.out.note(f"Saved the transcript to {path}.")


def _ms(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _rate(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.1f} tokens/s"


def _start_history() -> Any:
    """Line editing and a persistent history on a terminal, where `readline` exists."""
    try:
        import readline
    except ImportError:  # Windows without pyreadline: plain input()
        return None
    from agentic_onnx.core.paths import home_dir

    path = home_dir() / "chat_history"
    readline.set_history_length(HISTORY_LENGTH)
    try:
        readline.read_history_file(path)
    except OSError:
        pass
    return (readline, path)


def _save_history(history: Any) -> None:
    readline, path = history
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        readline.write_history_file(path)
    except OSError:
        pass
