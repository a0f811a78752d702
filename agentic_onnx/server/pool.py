"""The served models: loaded (in the background, on demand for the service), one worker each
(server/worker.py: a thread, a bounded queue, batches), found by id or alias, kept alive or
unloaded within a memory budget (server/residency.py), a copy per GPU with several
`--device-id` (server/replicas.py).

No web framework here: the HTTP layer hands us requests and reads events back through an
asyncio queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agentic_onnx.core.errors import AgenticError
from agentic_onnx.server.replicas import ModelReplicas, replicas_of, worker_rows
from agentic_onnx.server.worker import ModelNotServedError, ModelWorker

_server_log = logging.getLogger("uvicorn.error")


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    folder: Any  # core.models.model_folder.ModelFolder
    aliases: tuple[str, ...] = ()  # other names a request may use (the alias `serve` was given)
    adapters: tuple[tuple[str, Any], ...] = ()  # LoRA adapters (name, file): served as BASE:NAME

    @property
    def names(self) -> tuple[str, ...]:
        return (self.model_id, *self.aliases)


class ModelPool:
    """The models `serve` was started with: loaded in the background, so `/health` can say 503
    while they load. A request without a model name goes to the first model; one that names a
    model not served here is refused (ModelNotServedError)."""

    def __init__(self, specs: Sequence[ModelSpec], execution_provider: str = "auto",
                 threads: int | None = None, max_queue: int = 16, kv_slots: int | None = None,
                 kv_cache_mb: float | None = None, keep_alive_s: float | None = None,
                 memory_budget_bytes: int | None = None, on_demand: bool = False,
                 device_ids: Sequence[int] = (), batch_size: int | None = None) -> None:
        """`kv_slots`: conversations kept per model (default core.generation.kv_budget's);
        `kv_cache_mb`: their KV caches' memory per model (default: half the memory available
        once the models are loaded, shared by the models). The service (`serve --service`):
        `on_demand` loads a model a request names; `keep_alive_s` unloads an idle model (None:
        never); `memory_budget_bytes` bounds the loaded models' weights (server.residency).
        `device_ids`: the GPUs each model is loaded on; two or more: a copy per GPU, each with
        its own worker (server.replicas), its KV-cache slots and its share of the budgets.
        `batch_size`: waiting plain requests decoded together per model (core.generation.batch;
        None: its default for the EP the model runs on)."""
        from agentic_onnx.core.generation.kv_budget import DEFAULT_KV_SLOTS

        self.specs = list(specs)
        self.execution_provider = execution_provider
        self.threads = threads
        self.device_ids = tuple(device_ids)
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.kv_slots = kv_slots or DEFAULT_KV_SLOTS
        self.kv_cache_mb = kv_cache_mb
        self.workers: dict[str, ModelWorker | ModelReplicas] = {}  # per served model id
        self.error: AgenticError | None = None
        self.warnings: list[str] = []
        self.metrics: Any = None  # server.metrics.ServerMetrics, set by create_app(metrics_on=True)
        self.keep_alive_s = keep_alive_s
        self.memory_budget_bytes = memory_budget_bytes
        self.on_demand = on_demand
        self._keep_alive: dict[str, float | None] = {}  # per model, when a request set its own
        self._sizes: dict[str, int] = {}
        self._changing = threading.RLock()  # loads and unloads, one at a time
        self._closed = threading.Event()
        self._ready = threading.Event()

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self.error is None

    def load(self) -> None:
        """Load every model (blocking; `serve` runs it on a thread)."""
        try:
            models = []
            for spec in self.specs:
                models.append(self._load_copies(spec.folder))
                self.warnings.extend(dict.fromkeys(warning for copy in models[-1]
                                                   for warning in copy.warnings))
            for spec, copies in zip(self.specs, models):  # the budget, once all are loaded
                self.workers[spec.model_id] = self._worker(spec.model_id, copies, len(models))
                self._sizes[spec.model_id] = _weights(copies[0]) * len(copies)
        except AgenticError as error:
            self.error = error
        finally:
            self._ready.set()
        if self.keep_alive_s is not None or self.on_demand:
            threading.Thread(target=self._expire, name="keep-alive", daemon=True).start()

    def _load_copies(self, folder: Any) -> list[Any]:
        """The model loaded once per device id (once, on the EP's default GPU, without ids)."""
        from agentic_onnx.core.generation.engine import load_model

        first, *others = self.device_ids or (None,)
        copies = [load_model(folder, self.execution_provider, self.threads, device_id=first)]
        if others and copies[0].execution_provider != "cuda":
            from agentic_onnx.core.errors import UsageError
            from agentic_onnx.core.machine.execution_provider import EP_LABELS

            raise UsageError(f"Several --device-id need CUDA; {folder.name} runs on "
                             f"{EP_LABELS[copies[0].execution_provider]}.",
                             "Pass one --device-id, or -e cuda "
                             "(DirectML uses one GPU per process).")
        # The other GPUs on the EP the first chose: a copy that fails to start is an error, never
        # a silent CPU copy (`auto` falls back only for the first).
        return [*copies, *(load_model(folder, copies[0].execution_provider, self.threads,
                                      device_id=device_id) for device_id in others)]

    def _worker(self, model_id: str, copies: list[Any], models: int) -> ModelWorker | ModelReplicas:
        """A ModelWorker for one copy; for several, their ModelReplicas. Each copy's KV caches
        get the budget of one model (`--kv-cache-mb`, else a share of its own GPU's memory)."""
        from agentic_onnx.core.generation.batch import default_batch_size
        from agentic_onnx.core.generation.kv_budget import MIB, default_budget_bytes

        workers = [ModelWorker(model_id, loaded, self.max_queue, self.kv_slots,
                               int(self.kv_cache_mb * MIB) if self.kv_cache_mb else
                               default_budget_bytes(loaded.execution_provider, models,
                                                    loaded.device_id),
                               self.batch_size or default_batch_size(loaded.execution_provider))
                   for loaded in copies]
        return workers[0] if len(workers) == 1 else ModelReplicas(model_id, workers)

    # -- the service: models loaded on demand, kept alive, unloaded -------------------------

    def ensure_loaded(self, name: str | None, keep_alive_s: object = "default") -> dict[str, Any]:
        """The model `name` names (an id, alias, `onnx add` name or folder path), loaded now if
        it is not: what `/api/load` answers (its id, EP, load time; 0 when it was resident).
        Idle models are unloaded first when the new one would not fit the memory budget."""
        from agentic_onnx.core.generation.engine import weights_size
        from agentic_onnx.core.models.resolve import resolve
        from agentic_onnx.server.residency import to_unload

        with self._changing:
            if name and self.serves(name) or not name and self.specs:
                spec = self.spec_for(name)
                self._set_keep_alive(spec.model_id, keep_alive_s)
                return self._loaded_json(spec.model_id, 0.0, [])
            if not self.on_demand:
                raise ModelNotServedError(name or "", self.served_ids())
            resolution = resolve(name)
            model_id, aliases = served_names(name, resolution)
            loaded_as = self._id_of_folder(resolution.folder)
            if loaded_as is not None:  # another name of a loaded model (a path, an alias)
                self._add_aliases(loaded_as, (*aliases, *((name,) if name else ())))
                self._set_keep_alive(loaded_as, keep_alive_s)
                return self._loaded_json(loaded_as, 0.0, [])
            if model_id in self.workers:  # the same name for another folder: an id of its own
                model_id = f"{model_id}-{_path_digest(resolution.folder)}"
            # Each copy (one per --device-id) holds its own weights.
            needed = weights_size(resolution.folder) * max(len(self.device_ids), 1)
            for idle in to_unload(self._residents(), needed, self.memory_budget_bytes):
                self.unload(idle)
            copies = self._load_copies(resolution.folder)
            loaded = copies[0]
            self.workers[model_id] = self._worker(model_id, copies, len(self.workers) + 1)
            self._sizes[model_id] = needed
            extra = (name,) if name and name != model_id else ()
            self.specs = [*self.specs, ModelSpec(model_id, resolution.folder,
                                        tuple(dict.fromkeys((*aliases, *extra))),
                                        adapters=installed_adapters_of(resolution.folder))]
            self._set_keep_alive(model_id, keep_alive_s)
            return self._loaded_json(model_id, loaded.load_s, loaded.warnings)

    def _id_of_folder(self, folder: Any) -> str | None:
        """The id a folder is loaded under, if it is loaded."""
        wanted = folder.path.resolve()
        return next((spec.model_id for spec in self.specs
                     if spec.folder.path.resolve() == wanted and spec.model_id in self.workers),
                    None)

    def pin(self, name: str | None) -> Callable[[], None] | None:
        """Keep the model `name` names loaded while a request is being admitted (keep-alive and
        the memory budget pass over it); the release, or None when it is not loaded."""
        try:
            worker = self.worker_for(name)
        except (KeyError, ModelNotServedError):
            return None
        return worker.hold()

    def unload(self, name: str) -> str:
        """Unload a model now (its queued requests are answered first); its id."""
        from agentic_onnx.core.generation.engine import forget_model

        with self._changing:
            spec = self.spec_for(name)
            worker = self.workers.pop(spec.model_id)
            self.specs = [kept for kept in self.specs if kept.model_id != spec.model_id]
            self._sizes.pop(spec.model_id, None)
            self._keep_alive.pop(spec.model_id, None)
            worker.stop()
            for replica in replicas_of(worker):
                forget_model(replica.model)
            return spec.model_id

    def _set_keep_alive(self, model_id: str, keep_alive_s: object) -> None:
        if keep_alive_s != "default":
            self._keep_alive[model_id] = keep_alive_s  # type: ignore[assignment]
        self.workers[model_id].last_used = time.monotonic()

    def keep_alive_of(self, model_id: str) -> float | None:
        return self._keep_alive.get(model_id, self.keep_alive_s)

    def _residents(self) -> list[Any]:
        from agentic_onnx.server.residency import Resident

        return [Resident(model_id, self._sizes.get(model_id, 0) + _kv_bytes(worker),
                         worker.last_used, self.keep_alive_of(model_id), worker.busy,
                         worker.served)
                for model_id, worker in list(self.workers.items())]

    def _expire(self) -> None:
        """Unload models whose keep-alive ran out (checked every half second until close)."""
        from agentic_onnx.server.residency import expired

        while not self._closed.wait(0.5):
            try:
                with self._changing:
                    for model_id in expired(self._residents(), time.monotonic()):
                        self.unload(model_id)
            except Exception:  # noqa: BLE001 - keep-alive must go on
                _server_log.exception("Could not unload an expired model")

    def _add_aliases(self, model_id: str, names: tuple[str, ...]) -> None:
        self.specs = [ModelSpec(spec.model_id, spec.folder,
                                tuple(dict.fromkeys((*spec.aliases, *names))), spec.adapters)
                      if spec.model_id == model_id else spec for spec in self.specs]

    def _loaded_json(self, model_id: str, load_s: float, warnings: list[str]) -> dict[str, Any]:
        worker = self.workers[model_id]
        return {"model": model_id, "execution_provider": worker.model.execution_provider,
                "threads": worker.model.threads, "load_s": round(load_s, 4),
                "warnings": list(warnings)}

    def resident(self) -> list[dict[str, Any]]:
        """What `/api/ps` lists: each loaded model, its memory, queue and when it unloads."""
        now = time.monotonic()
        listed = []
        workers = dict(self.workers)
        for resident in self._residents():
            worker = workers.get(resident.model_id)
            if worker is None:
                continue
            expires = resident.expires_at()
            listed.append({**worker.status(), "execution_provider": worker.model.execution_provider,
                           "workers": worker_rows(worker),
                           "memory_bytes": resident.size_bytes,
                           "keep_alive_s": resident.keep_alive_s,
                           "unloads_in_s": None if expires is None or resident.busy
                           else round(max(expires - now, 0.0), 1)})
        return listed

    def wait(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def spec_for(self, name: str | None) -> ModelSpec:
        """The served model that `name` names (its id or an alias); the first for no name."""
        if not name and self.specs:
            return self.specs[0]
        name = name or ""
        base, _, adapter = name.partition(":")
        for spec in self.specs:
            if name in spec.names or (adapter and base in spec.names
                                      and adapter in dict(spec.adapters)):
                return spec
        raise ModelNotServedError(name, self.served_ids())

    def serves(self, name: str | None) -> bool:
        """Whether `name` (an id, alias or BASE:ADAPTER; none: the first model) is served here."""
        try:
            self.spec_for(name)
        except ModelNotServedError:
            return False
        return bool(self.specs)

    def served_ids(self) -> list[str]:
        """What /v1/models lists: each model, then each of its adapters as BASE:ADAPTER."""
        return [served for spec in self.specs for served in
                (spec.model_id, *(f"{spec.model_id}:{name}" for name, _ in spec.adapters))]

    def adapter_for(self, name: str | None) -> str | None:
        """The adapter a request's model name selects (BASE:ADAPTER), else None."""
        spec = self.spec_for(name)
        if not name or name in spec.names:
            return None
        return name.partition(":")[2]

    def served_name(self, name: str | None) -> str:
        """The id an answer reports: the model's, with `:ADAPTER` when one was chosen."""
        spec = self.spec_for(name)
        adapter = self.adapter_for(name)
        return f"{spec.model_id}:{adapter}" if adapter else spec.model_id

    def worker_for(self, name: str | None) -> ModelWorker | ModelReplicas:
        return self.workers[self.spec_for(name).model_id]

    def status(self) -> list[dict[str, Any]]:
        if not self.ready:
            return [{"id": spec.model_id} for spec in self.specs]
        return [worker.status() for worker in list(self.workers.values())]

    def close(self) -> None:
        self._closed.set()
        for worker in list(self.workers.values()):
            worker.stop()


def served_names(name: str | None, resolution: Any) -> tuple[str, tuple[str, ...]]:
    """The id a served model is published under, and the other names requests may use: a store
    model is its id (an alias it was chosen by also works); a model added with `onnx add` is its
    name; a folder is the folder's name."""
    from agentic_onnx.core.models.custom_models import get_custom_model
    from agentic_onnx.core.models.names import is_model_name

    named = name is not None and is_model_name(name)
    if resolution.model_id:
        return resolution.model_id, ((name,) if named and name != resolution.model_id else ())
    if named and get_custom_model(name) is not None:  # type: ignore[arg-type]
        return name, ()  # type: ignore[return-value]
    return resolution.folder.name, ()


def installed_adapters_of(folder: Any) -> tuple[tuple[str, Any], ...]:
    """The LoRA adapters kept with a model (core.models.adapters), served as BASE:ADAPTER."""
    from agentic_onnx.core.models.adapters import installed_adapters

    return tuple(installed_adapters(folder.path).items())


def _weights(loaded: Any) -> int:
    from agentic_onnx.core.generation.engine import weights_size

    return weights_size(loaded.folder)


def _path_digest(folder: Any) -> str:
    import hashlib

    return hashlib.sha256(str(folder.path.resolve()).encode()).hexdigest()[:8]


def _kv_bytes(worker: Any) -> int:
    """The memory a worker's kept KV caches hold now (its slots; every copy's), for the
    service's budget."""
    from agentic_onnx.core.generation.kv_budget import MIB

    return int(sum(float(replica.local.kv_usage().get("mb") or 0.0)
                   for replica in replicas_of(worker)) * MIB)
