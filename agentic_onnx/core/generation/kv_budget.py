"""What a kept KV cache costs, and how much memory the KV-cache slots of a model may hold.

core.generation.prefix_cache keeps several generators (slots) per model, one per conversation;
each holds a KV cache of 2 (key and value) x layers x KV heads x head size values per token,
read from the model folder's genai_config.json, at the model's KV dtype (the dtype of a
generator's `present` output: fp32 for the CPU models here).

onnxruntime-genai 0.18 detail: with `search.past_present_share_buffer` (on in the builder's
models we ship and test), a generator allocates its KV cache for its whole `max_length` when it is
created, and a kept generator's max length is the model's context. So such a slot costs the
whole context from its first token (measured: generators of tiny-phi3-fp32, 1 KiB per token,
holding 8 tokens took 0.63 MB each with a max length of 512, 0.17 MB with 64; one of the
Phi-3-mini shape, 4,096 x 768 KiB, took 3.23 GB); without the shared buffer, a slot costs the
tokens it holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentic_onnx.core.generation.engine import LoadedModel

DEFAULT_KV_SLOTS = 4  # `serve`: conversations kept per model (chat keeps one)
MEMORY_SHARE = 0.5  # the default budget: this share of the memory available once models are loaded
MIB = 1024 * 1024


@dataclass(frozen=True)
class KVLayout:
    """The KV cache of one generator of a model."""

    bytes_per_token: int  # 2 x layers x KV heads x head size x dtype bytes
    context_length: int
    preallocated: bool  # past_present_share_buffer: the whole max length, allocated at creation

    def slot_bytes(self, tokens: int) -> int:
        """What a kept generator costs while it holds `tokens` (its max length is the context)."""
        held = self.context_length if self.preallocated else min(tokens, self.context_length)
        return self.bytes_per_token * held


def kv_layout(model: LoadedModel) -> KVLayout | None:
    """The model's KV-cache layout, or None when its genai_config.json does not say enough (the
    slots are then bounded by their count only)."""
    try:
        config = json.loads((model.folder.path / "genai_config.json").read_text(encoding="utf-8"))
        decoder = config["model"]["decoder"]
        layers = int(decoder["num_hidden_layers"])
        heads = int(decoder.get("num_key_value_heads") or decoder["num_attention_heads"])
        head_size = int(decoder.get("head_size")
                        or int(decoder["hidden_size"]) // int(decoder["num_attention_heads"]))
        shared = bool((config.get("search") or {}).get("past_present_share_buffer", True))
        present = str((decoder.get("outputs") or {}).get("present_key_names", "present.%d.key"))
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None
    if min(layers, heads, head_size) <= 0:
        return None
    dtype_bytes = _kv_dtype_bytes(model, present)
    return KVLayout(2 * layers * heads * head_size * dtype_bytes, model.folder.context_length,
                    shared)


def _kv_dtype_bytes(model: LoadedModel, present_key_names: str) -> int:
    """The bytes of one KV value, read from a generator of length 1 (a few KB, made and dropped);
    4 (fp32, the largest in use) when it cannot be read."""
    try:
        import onnxruntime_genai as og

        params = og.GeneratorParams(model.og_model)
        params.set_search_options(max_length=1)
        generator: Any = og.Generator(model.og_model, params)
        return int(generator.get_output(present_key_names % 0).dtype.itemsize) or 4
    except Exception:  # noqa: BLE001 - a model type genai cannot probe this way: assume fp32
        return 4


def default_budget_bytes(execution_provider: str = "cpu", models: int = 1,
                         device_id: int | None = None) -> int | None:
    """The default KV-cache budget of one model: half the memory available now (the free memory
    of its GPU, `device_id` or the first, for a CUDA model, else the machine's), shared evenly by
    `models` served models; None when the memory cannot be read. (NVML numbers GPUs in PCI
    order, CUDA fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID: on a machine with mixed GPUs
    this may read another GPU's memory.)"""
    available: int | None = None
    if execution_provider == "cuda":
        from agentic_onnx.core.machine.hardware import probe_gpus

        gpus, _ = probe_gpus()
        index = device_id if device_id is not None and device_id < len(gpus) else 0
        available = gpus[index].memory_free_bytes if gpus else None
    if available is None:
        from agentic_onnx.core.machine.hardware import probe_memory

        available = probe_memory().available_bytes
    if available is None:
        return None
    return int(available * MEMORY_SHARE) // max(models, 1)
