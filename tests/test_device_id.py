"""`--device-id` (the GPU a local model loads on) and `serve`'s one worker per GPU.

No GPU here: onnxruntime-genai's config, model and device calls are replaced by recorders, and
the pool's workers answer through a fake LocalGeneration. What real GPUs do with these calls is
not checked by these tests (docs/serving.md says so)."""

from __future__ import annotations

import io
import queue
import sys
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from agentic_onnx.core.errors import ExitCode, UsageError
from agentic_onnx.core.generation import engine
from agentic_onnx.core.generation.events import Finish, TextDelta, Usage
from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.generation.response import Response
from agentic_onnx.core.models.model_folder import open_model_folder

from .conftest import MODELS

MODEL = "tiny-phi3-fp32"
HELLO = [{"role": "user", "content": "Say hello."}]


# -- the engine: provider options and the current device -----------------------------------


class FakeGenai:
    """The onnxruntime_genai calls load_model makes, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        fake = self

        class Config:
            def __init__(self, path: str) -> None:
                fake.calls.append(("Config", path))

            def __getattr__(self, name: str) -> Any:
                return lambda *args: fake.calls.append((name, *args))

        self.Config = Config
        self.Model = lambda config: SimpleNamespace(config=config)
        self.Tokenizer = lambda model: SimpleNamespace(encode=lambda text: [])

    def disable_telemetry_events(self) -> None:
        pass

    def set_current_gpu_device_id(self, device_id: int) -> None:
        self.calls.append(("set_current_gpu_device_id", device_id))

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [call[1:] for call in self.calls if call[0] == name]


@pytest.fixture
def genai(monkeypatch) -> FakeGenai:
    import onnxruntime_genai as og

    fake = FakeGenai()
    for name in ("Config", "Model", "Tokenizer", "disable_telemetry_events",
                 "set_current_gpu_device_id"):
        monkeypatch.setattr(og, name, getattr(fake, name))
    engine.clear_model_cache()
    yield fake
    engine.clear_model_cache()


def gpu_here(candidates) -> list[str]:  # noqa: ANN001 - the engine's `available` probe
    return ["cuda", "dml", "cpu"]


def folder():
    return open_model_folder(MODELS / MODEL)


def test_cuda_gets_the_device_id_provider_option_and_the_current_device(genai):
    loaded = engine.load_model(folder(), "cuda", 1, device_id=1, available=gpu_here)
    assert genai.named("set_provider_option") == [("cuda", "device_id", "1")]
    assert genai.named("set_current_gpu_device_id") == [(1,)]
    assert (loaded.execution_provider, loaded.device_id) == ("cuda", 1)
    # set before the model is created from the config
    names = [call[0] for call in genai.calls]
    assert names.index("set_provider_option") < names.index("overlay")


def test_directml_gets_its_device_index_option(genai):
    loaded = engine.load_model(folder(), "dml", 1, device_id=2, available=gpu_here)
    assert genai.named("set_provider_option") == [("dml", "device_index", "2")]
    assert genai.named("set_current_gpu_device_id") == []  # a CUDA call only
    assert loaded.device_id == 2


def test_no_device_id_sets_no_option(genai):
    loaded = engine.load_model(folder(), "cuda", 1, available=gpu_here)
    assert genai.named("set_provider_option") == [] == genai.named("set_current_gpu_device_id")
    assert loaded.device_id is None


def test_each_gpu_is_its_own_cached_copy(genai):
    first = engine.load_model(folder(), "cuda", 1, device_id=0, available=gpu_here)
    second = engine.load_model(folder(), "cuda", 1, device_id=1, available=gpu_here)
    again = engine.load_model(folder(), "cuda", 1, device_id=1, available=gpu_here)
    assert first.og_model is not second.og_model
    assert again.og_model is second.og_model and again.load_s == 0.0


def test_a_generating_thread_makes_the_models_gpu_current(genai):
    loaded = engine.load_model(folder(), "cuda", 1, device_id=3, available=gpu_here)
    genai.calls.clear()
    thread = threading.Thread(target=loaded.bind_device)
    thread.start()
    thread.join()
    assert genai.named("set_current_gpu_device_id") == [(3,)]


@pytest.mark.parametrize("device_id", [1, 5])
def test_a_gpu_other_than_0_on_the_cpu_is_a_usage_error(genai, device_id):
    with pytest.raises(UsageError) as raised:
        engine.load_model(folder(), "cpu", 1, device_id=device_id, available=gpu_here)
    assert raised.value.exit_code == ExitCode.USAGE_ERROR == 2
    assert "--device-id applies to GPU execution providers" in raised.value.hint
    assert genai.calls == []  # refused before anything loads


def test_device_0_on_the_cpu_is_the_cpu_and_a_negative_id_is_refused(genai):
    loaded = engine.load_model(folder(), "cpu", 1, device_id=0, available=gpu_here)
    assert loaded.execution_provider == "cpu" and loaded.device_id is None
    assert genai.named("set_provider_option") == []
    with pytest.raises(UsageError, match="negative"):
        engine.load_model(folder(), "cuda", 1, device_id=-1, available=gpu_here)


# -- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["run", "-m", str(MODELS / MODEL), "-t", "Hi", "-e", "cpu", "--device-id", "1"],
    ["onnx", "test", "-m", str(MODELS / MODEL), "-e", "cpu", "--device-id", "1"],
    ["run", "-m", str(MODELS / MODEL), "-t", "Hi", "--device-id", "-1"],
    ["serve", "-m", str(MODELS / MODEL), "--device-id", "x"],
    ["serve", "-m", str(MODELS / MODEL), "--device-id", "0", "--device-id", "0"],
    ["service", "start", "--device-id", "x"],  # refused before a background child starts
])
def test_a_bad_device_id_exits_2_with_one_line(argv):
    from .conftest import run_cli

    result = run_cli(*argv)
    assert result.returncode == 2, result.stderr
    assert "--device-id" in result.stderr
    assert "Traceback" not in result.stderr


def test_each_command_hands_its_device_id_to_load_model(monkeypatch):
    """What `run`, the root form, `chat`, `serve`, `onnx test` and `onnx benchmark` give the
    engine (recorded; the model then loads on the CPU, as this machine has no GPU)."""
    from agentic_onnx.cli import serve as serve_cli
    from agentic_onnx.cli.main import main

    seen: dict[str, list[int | None]] = {}
    real_load = engine.load_model

    def recording(folder, execution_provider="auto", threads=None, *, device_id=None,
                  **kwargs):  # noqa: ANN001
        seen.setdefault(command, []).append(device_id)
        return real_load(folder, "cpu", threads, **kwargs)

    def load_pool(specs, host, port, api_key, max_queue, execution_provider, threads, guard,
                  device_ids=(), **_):  # noqa: ANN001, ANN003 - serve's pool, no HTTP part
        from agentic_onnx.server.pool import ModelPool

        pool = ModelPool(specs, execution_provider, threads, max_queue, device_ids=device_ids)
        pool.load()
        pool.close()
        if pool.error is not None:
            raise pool.error

    monkeypatch.setattr(engine, "load_model", recording)
    monkeypatch.setattr(serve_cli, "_run_server", load_pool)
    model = str(MODELS / MODEL)
    common = ["--threads", "1", "--device-id", "3"]
    commands = {
        "run": ["run", "-m", model, "-t", "Hi", "--max-tokens", "2", *common],
        "root form": ["--provider", "onnx", "--model", model, "--task", "Hi", "--max-tokens",
                      "2", *common],
        "chat": ["chat", "-m", model, "--max-tokens", "2", *common],
        "serve": ["serve", "-m", model, *common],
        "onnx test": ["onnx", "test", "-m", model, *common],
        "onnx benchmark": ["onnx", "benchmark", "-m", model, "--prompt-tokens", "4",
                           "--gen-tokens", "2", "-n", "1", "--warmup", "0", *common],
    }
    for command, argv in commands.items():
        monkeypatch.setattr(sys, "stdin", io.StringIO("Hello\n"))
        assert main(argv) == 0, command
    assert seen == {command: [3] for command in commands}


def test_serve_takes_several_device_ids_repeated_or_listed(monkeypatch):
    from agentic_onnx.cli import serve as serve_cli
    from agentic_onnx.cli.main import main
    from agentic_onnx.core.machine import hardware

    handed: list[tuple[int, ...]] = []
    monkeypatch.setattr(serve_cli, "_run_server",
                        lambda *args, device_ids=(), **kwargs: handed.append(device_ids))
    monkeypatch.setattr(hardware, "cuda_device_ids", lambda: [0, 1, 2])
    model = str(MODELS / MODEL)
    assert main(["serve", "-m", model, "--device-id", "1", "--device-id", "0"]) == 0
    assert main(["serve", "-m", model, "--device-id", "2,3"]) == 0
    assert main(["serve", "-m", model, "--device-id", "all"]) == 0
    assert main(["serve", "-m", model]) == 0
    assert handed == [(1, 0), (2, 3), (0, 1, 2), ()]


def test_all_counts_the_gpus_cuda_can_see(monkeypatch):
    from agentic_onnx.core.machine import hardware

    gpus = [SimpleNamespace(index=i) for i in range(4)]
    monkeypatch.setattr(hardware, "probe_gpus", lambda: (gpus, None))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert hardware.cuda_device_ids() == [0, 1, 2, 3]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert hardware.cuda_device_ids() == [0, 1]  # CUDA numbers the visible ones from 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert hardware.cuda_device_ids() == []


def test_ps_shows_the_gpu_of_each_worker():
    from agentic_onnx.cli.service import _gpus

    assert _gpus({"workers": [{"device_id": 0}, {"device_id": 1}]}) == "0,1"
    assert _gpus({"workers": [{"device_id": None}]}) == "-"
    assert _gpus({}) == "-"  # an older service's /api/ps


# -- the pool: one worker per GPU, least in flight -----------------------------------------


@dataclass
class FakeLoaded:
    """What the pool reads of a LoadedModel."""

    folder: Any
    device_id: int | None
    execution_provider: str = "cuda"
    threads: int = 1
    load_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    bound_on: list[str] = field(default_factory=list)

    def bind_device(self) -> None:
        self.bound_on.append(threading.current_thread().name)


class MeetingLocal:
    """A LocalGeneration whose answers wait for each other: a request finishes only once
    `meeting.parties` requests are generating at the same time, so requests served one after
    another on one worker would break the barrier instead of passing."""

    meeting: threading.Barrier

    def __init__(self, model: FakeLoaded, slots: int = 1,
                 kv_budget_bytes: int | None = None) -> None:
        self.model = model

    def stream(self, request: ChatRequest, tenant: str = ""):  # noqa: ANN201
        self.meeting.wait(timeout=30)  # a failure guard, never reached when the copies overlap
        yield TextDelta(f"gpu {self.model.device_id}")
        yield Usage(1, 1)
        yield Finish("stop")

    def kv_usage(self) -> dict[str, object]:
        return {"slots": 0, "max_slots": 1, "mb": 0.5}


@pytest.fixture
def fake_gpus(monkeypatch):
    """load_model gives a CUDA copy per device id; workers answer through MeetingLocal."""
    from agentic_onnx.core.generation import local

    loads: list[int | None] = []

    def load(folder, execution_provider="auto", threads=None, *, device_id=None,
             **_):  # noqa: ANN001, ANN003
        loads.append(device_id)
        return FakeLoaded(folder, device_id)

    monkeypatch.setattr(engine, "load_model", load)
    monkeypatch.setattr(local, "LocalGeneration", MeetingLocal)
    return loads


def pool_of(device_ids, **kwargs):  # noqa: ANN001, ANN003, ANN201
    from agentic_onnx.server.pool import ModelPool, ModelSpec

    pool = ModelPool([ModelSpec("tiny", folder())], "cuda", 1, max_queue=4, kv_cache_mb=1.0,
                     device_ids=device_ids, **kwargs)
    pool.load()
    assert pool.error is None, pool.error
    return pool


def answer(job_items: queue.Queue) -> str:
    text = []
    while not isinstance(item := job_items.get(timeout=60), (Response, Exception)):
        text.append(item.text if isinstance(item, TextDelta) else "")
    assert isinstance(item, Response), item
    return "".join(text)


def test_two_gpus_answer_two_concurrent_requests_at_once(fake_gpus):
    MeetingLocal.meeting = threading.Barrier(2)
    pool = pool_of((0, 1))
    try:
        assert fake_gpus == [0, 1]
        worker = pool.worker_for("tiny")
        first, second = queue.Queue(), queue.Queue()
        worker.submit(ChatRequest.of(HELLO), log=False, deliver=first.put)
        worker.submit(ChatRequest.of(HELLO), log=False, deliver=second.put)
        assert sorted([answer(first), answer(second)]) == ["gpu 0", "gpu 1"]
        # each worker thread made its own GPU current before generating
        assert all(any(name.startswith("model-") for name in copy.model.bound_on)
                   for copy in worker.replicas)
    finally:
        pool.close()


def test_one_device_id_is_one_plain_worker(fake_gpus):
    from agentic_onnx.server.worker import ModelWorker

    MeetingLocal.meeting = threading.Barrier(1)
    for ids in [(), (1,)]:
        pool = pool_of(ids)
        try:
            assert type(pool.worker_for("tiny")) is ModelWorker
            assert pool.worker_for("tiny").model.device_id == (ids[0] if ids else None)
        finally:
            pool.close()
    assert fake_gpus == [None, 1]


def test_the_least_busy_copy_gets_the_request_ties_to_the_first():
    from agentic_onnx.server.replicas import ModelReplicas

    copies = [SimpleNamespace(in_flight=n) for n in (2, 1, 1)]
    replicas = ModelReplicas("m", copies)
    assert replicas.least_in_flight() is copies[1]
    copies[1].in_flight = 3
    assert replicas.least_in_flight() is copies[2]
    for copy in copies:
        copy.in_flight = 0
    assert replicas.least_in_flight() is copies[0]


def test_ps_and_the_memory_budget_count_every_copy(fake_gpus):
    from agentic_onnx.core.generation.kv_budget import MIB
    from agentic_onnx.server.pool import _kv_bytes

    MeetingLocal.meeting = threading.Barrier(1)
    pool = pool_of((0, 1), keep_alive_s=None)
    try:
        weights = engine.weights_size(folder())
        (row,) = pool.resident()
        assert row["workers"] == [{"device_id": 0, "running": 0, "waiting": 0},
                                  {"device_id": 1, "running": 0, "waiting": 0}]
        assert row["memory_bytes"] == 2 * weights + _kv_bytes(pool.worker_for("tiny"))
        assert _kv_bytes(pool.worker_for("tiny")) == int(1.0 * MIB)  # 0.5 MiB each
        status = pool.status()[0]
        assert (status["max_queue"], status["kv_cache"]["max_slots"]) == (8, 2)
    finally:
        pool.close()


def test_several_device_ids_need_cuda(fake_gpus, monkeypatch):
    from agentic_onnx.server.pool import ModelPool, ModelSpec

    monkeypatch.setattr(engine, "load_model",
                        lambda folder, *args, device_id=None, **kwargs:
                        FakeLoaded(folder, device_id, execution_provider="dml"))
    pool = ModelPool([ModelSpec("tiny", folder())], "dml", 1, device_ids=(0, 1))
    pool.load()
    assert isinstance(pool.error, UsageError)
    assert "need CUDA" in pool.error.message
