"""The catalog data file, its schema, the hardware-based choice, and `--model` resolution."""

from __future__ import annotations

import json
import shutil

import pytest

from agentic_onnx.core.models.catalog import load_catalog, parse_catalog
from agentic_onnx.core.models.custom_models import add_custom_model, get_custom_model, remove_custom_model
from agentic_onnx.core.errors import (
    ExitCode,
    InvalidModelError,
    ModelNotFoundError,
    NotInstalledError,
    UsageError,
)
from agentic_onnx.core.models.recommend import (
    GIB,
    MachineFacts,
    choose_variant,
    download_summary,
    fit,
    recommend,
)
from agentic_onnx.core.machine.speed_estimate import SpeedFacts
from agentic_onnx.core.models.resolve import download_source, resolve

from .conftest import MODELS, models_table_column, run_cli
from .fake_hub import install_fixture

CPU_ONLY_16G = MachineFacts(16 * GIB, (), ("cpu",))
CPU_ONLY_8G = MachineFacts(8 * GIB, (), ("cpu",))
CPU_ONLY_32G = MachineFacts(32 * GIB, (), ("cpu",))
CUDA_24G = MachineFacts(32 * GIB, (24 * GIB,), ("cuda", "cpu"))
GPU_WITHOUT_CUDA_BUILD = MachineFacts(32 * GIB, (24 * GIB,), ("cpu",))
TINY_GPU = MachineFacts(32 * GIB, (2 * GIB,), ("cuda", "cpu"))

# Simulated machines with speed facts (read bandwidth GB/s, engine threads, SIMD, GPU GB/s).
AVX512 = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni")
TWO_CORES_24G = MachineFacts(24 * GIB, (), ("cpu",), SpeedFacts(40.0, 2, AVX512))
SIXTEEN_CORES_64G = MachineFacts(64 * GIB, (), ("cpu",), SpeedFacts(90.0, 16, AVX512))
SIXTEEN_CORES_64G_SLOW_RAM = MachineFacts(64 * GIB, (), ("cpu",), SpeedFacts(40.0, 16, AVX512))
GPU_24G = MachineFacts(64 * GIB, (24 * GIB,), ("cuda", "cpu"), SpeedFacts(40.0, 8, AVX512, 1008.0))
SLOW_LAPTOP = MachineFacts(16 * GIB, (), ("cpu",), SpeedFacts(8.0, 2, ("avx", "avx2")))


def catalog_json(**changes: object) -> dict:
    data = json.loads(json.dumps(load_catalog().model_dump(mode="json")))
    data.update(changes)
    return data


# -- the shipped catalog -------------------------------------------------------------------------


def test_seed_models_are_in_the_catalog_with_the_issue_repos():
    catalog = load_catalog()
    mini = catalog.get("phi-3-mini-4k-cpu")
    assert (mini.repo, mini.subfolder) == ("microsoft/Phi-3-mini-4k-instruct-onnx",
                                           "cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4")
    medium = catalog.get("phi-3-medium-128k-cpu")
    assert (medium.repo, medium.subfolder) == ("microsoft/Phi-3-medium-128k-instruct-onnx-cpu",
                                               "cpu-int4-rtn-block-32-acc-level-4")
    gpu = catalog.get("phi-3-mini-4k-gpu")
    assert gpu.repo == mini.repo and gpu.execution_provider == "cuda"
    assert catalog.get("phi-3-mini-4k-dml").execution_provider == "dml"


def test_every_entry_has_a_source_and_every_family_a_cpu_variant():
    catalog = load_catalog()
    for entry in catalog.models:
        assert entry.sources and all(s.startswith("https://") for s in entry.sources), entry.id
        assert entry.id.startswith(entry.family), entry.id
    for family in catalog.families:
        assert any(v.execution_provider == "cpu" for v in catalog.family(family)), family


@pytest.mark.parametrize("change, message", [
    ({"subfolder": "../escape"}, "unsafe path"),
    ({"subfolder": "/etc"}, "unsafe path"),
    ({"id": "phi-3-mini-4k"}, "also family names"),
    ({"surprise": 1}, "Extra inputs"),
    ({"id": "Bad Id"}, "pattern"),
])
def test_invalid_entries_are_rejected(change, message):
    data = catalog_json()
    data["models"][0].update(change)
    with pytest.raises(ValueError, match=message):
        parse_catalog(json.dumps(data))


def test_duplicate_ids_and_unknown_recommendations_are_rejected():
    data = catalog_json()
    data["models"].append(data["models"][0])
    with pytest.raises(ValueError, match="duplicate ids"):
        parse_catalog(json.dumps(data))
    data = catalog_json(recommendation={"gpu": "nope", "large_cpu": "phi-3-medium-128k-cpu",
                                        "small_cpu": "phi-3-mini-4k-cpu"})
    with pytest.raises(ValueError, match="unknown id 'nope'"):
        parse_catalog(json.dumps(data))


# -- the seed's selectModelForHardware -----------------------------------------------------------


@pytest.mark.parametrize("facts, expected", [
    (CUDA_24G, "phi-3-mini-4k-gpu"),
    (GPU_WITHOUT_CUDA_BUILD, "phi-3-medium-128k-cpu"),  # a GPU that CUDA cannot use does not count
    (TINY_GPU, "phi-3-medium-128k-cpu"),  # too little VRAM
    (CPU_ONLY_16G, "phi-3-medium-128k-cpu"),
    (CPU_ONLY_8G, "phi-3-mini-4k-cpu"),
    (MachineFacts(2 * GIB, (), ("cpu",)), "phi-3-mini-4k-cpu"),  # nothing fits: the smallest
])
def test_recommendation_follows_the_seed_rule(facts, expected):
    choice = recommend(load_catalog(), facts, installed=set())
    assert choice.model_id == expected
    assert not choice.installed


def test_two_cores_get_the_mini_model_not_the_medium_one_that_would_crawl():
    choice = recommend(load_catalog(), TWO_CORES_24G, installed=set())
    assert choice.model_id == "phi-3-mini-4k-cpu"
    assert choice.estimate.tokens_per_s == pytest.approx(11, abs=0.5)
    assert choice.reason == ("no usable CUDA GPU; ~11 tok/s estimated (phi-3-medium-128k-cpu "
                             "fits but would decode ~3.2 tok/s, under the usable 5 tok/s)")


def test_sixteen_cores_with_fast_memory_get_the_medium_model():
    choice = recommend(load_catalog(), SIXTEEN_CORES_64G, installed=set())
    assert choice.model_id == "phi-3-medium-128k-cpu"
    assert choice.estimate.tokens_per_s >= 5 and choice.estimate.bound == "memory bandwidth"
    assert "64 GiB RAM holds the larger model; ~9.0 tok/s estimated" in choice.reason
    # the same cores with half the bandwidth: medium would decode ~4 tok/s, so mini it is
    slow_ram = recommend(load_catalog(), SIXTEEN_CORES_64G_SLOW_RAM, set())
    assert slow_ram.model_id == "phi-3-mini-4k-cpu"


def test_a_24_gib_gpu_with_cuda_gets_the_gpu_variant():
    choice = recommend(load_catalog(), GPU_24G, installed=set())
    assert choice.model_id == "phi-3-mini-4k-gpu"
    assert choice.estimate.tokens_per_s > 100
    assert choice.reason.startswith("a CUDA GPU with 24 GiB is usable; ~")


def test_when_nothing_is_usable_the_fastest_is_recommended_and_the_reason_says_so():
    choice = recommend(load_catalog(), SLOW_LAPTOP, installed=set())
    assert choice.model_id == "phi-3-mini-4k-cpu" and not choice.estimate.usable
    assert choice.reason.startswith("no recommended model reaches the usable 5 tok/s here")


def test_installed_models_are_preferred_only_when_usable():
    catalog = load_catalog()
    slow = recommend(catalog, TWO_CORES_24G, installed={"phi-3-medium-128k-cpu"})
    assert (slow.model_id, slow.installed) == ("phi-3-mini-4k-cpu", False)
    usable = recommend(catalog, TWO_CORES_24G, installed={"phi-4-mini-cpu"})  # ~6 tok/s here
    assert (usable.model_id, usable.installed) == ("phi-4-mini-cpu", True)
    assert usable.estimate.usable
    assert "phi-3-mini-4k-cpu would suit this machine better" in usable.reason
    other = recommend(catalog, TWO_CORES_24G, installed={"llama-3.2-3b-cpu"})  # ~8 tok/s here
    assert (other.model_id, other.installed) == ("llama-3.2-3b-cpu", True)


def test_the_download_offer_states_size_disk_after_and_speed():
    catalog = load_catalog()
    mini, medium = catalog.get("phi-3-mini-4k-cpu"), catalog.get("phi-3-medium-128k-cpu")
    assert download_summary(mini, TWO_CORES_24G, 50_000_000_000) == \
        "2.7 GB; 47.3 GB free after; ~11 tok/s here"
    assert download_summary(medium, TWO_CORES_24G, None) == \
        "9.4 GB; ~3.2 tok/s here (slow: under 5)"
    assert download_summary(mini, CPU_ONLY_8G, 1_000_000_000) == "2.7 GB; 0 B free after"


def test_recommendation_prefers_an_installed_model_and_says_what_would_be_better():
    choice = recommend(load_catalog(), CUDA_24G, installed={"phi-3-mini-4k-cpu"})
    assert choice.model_id == "phi-3-mini-4k-cpu" and choice.installed
    assert "phi-3-mini-4k-gpu would suit this machine better" in choice.reason


def test_recommendation_ignores_installed_models_that_do_not_fit():
    choice = recommend(load_catalog(), CPU_ONLY_8G, installed={"phi-3-medium-128k-cpu"})
    assert choice.model_id == "phi-3-mini-4k-cpu"


def test_fit_explains_why_not():
    catalog = load_catalog()
    assert "CUDA not available" in fit(catalog.get("phi-3-mini-4k-gpu"), CPU_ONLY_32G).reason
    assert "DirectML not available" in fit(catalog.get("phi-3-mini-4k-dml"), CUDA_24G).reason
    assert "VRAM" in fit(catalog.get("phi-3-mini-4k-gpu-fp16"), TINY_GPU).reason
    assert "16 GiB RAM" in fit(catalog.get("phi-3-medium-128k-cpu"), CPU_ONLY_8G).reason


def test_family_alias_picks_the_variant_for_the_machine():
    catalog = load_catalog()
    assert choose_variant(catalog, "phi-3-mini-4k", CUDA_24G, set()).model_id == "phi-3-mini-4k-gpu"
    cpu = choose_variant(catalog, "phi-3-mini-4k", CPU_ONLY_8G, set())
    assert cpu.model_id == "phi-3-mini-4k-cpu" and "CPU" in cpu.reason
    installed = choose_variant(catalog, "phi-3-mini-4k", CUDA_24G, {"phi-3-mini-4k-cpu"})
    assert installed.model_id == "phi-3-mini-4k-cpu"
    assert "phi-3-mini-4k-gpu would be faster" in installed.reason


# -- resolution ----------------------------------------------------------------------------------


def test_a_catalog_id_that_is_not_installed_carries_the_download_command():
    with pytest.raises(NotInstalledError) as raised:
        resolve("phi-3-mini-4k-cpu")
    assert raised.value.exit_code == ExitCode.MODEL_NOT_FOUND
    assert raised.value.download_command == "agentic-onnx onnx download phi-3-mini-4k-cpu"
    assert raised.value.download_command in raised.value.one_line()


def test_an_installed_catalog_id_resolves_to_its_store_folder():
    folder = install_fixture("phi-3-mini-4k-cpu", "tiny-phi3-int4")
    resolution = resolve("phi-3-mini-4k-cpu")
    assert resolution.folder.path == folder.resolve()
    assert resolution.model_id == "phi-3-mini-4k-cpu"


def test_an_alias_resolves_to_the_installed_variant_and_says_why():
    install_fixture("phi-3-mini-4k-cpu", "tiny-phi3-int4")
    resolution = resolve("phi-3-mini-4k", machine=lambda: CUDA_24G)
    assert resolution.model_id == "phi-3-mini-4k-cpu"
    assert resolution.note.startswith("phi-3-mini-4k -> phi-3-mini-4k-cpu (installed")


def test_an_alias_that_is_not_installed_names_the_chosen_variant():
    with pytest.raises(NotInstalledError) as raised:
        resolve("phi-3-mini-4k", machine=lambda: CUDA_24G)
    assert raised.value.model_id == "phi-3-mini-4k-gpu"
    assert "phi-3-mini-4k -> phi-3-mini-4k-gpu" in raised.value.message


def test_no_model_uses_the_recommendation():
    with pytest.raises(NotInstalledError) as raised:
        resolve(None, machine=lambda: CPU_ONLY_8G)
    assert raised.value.model_id == "phi-3-mini-4k-cpu"
    assert "No --model given" in raised.value.message
    install_fixture("phi-3-mini-4k-cpu", "tiny-phi3-int4")
    assert resolve(None, machine=lambda: CPU_ONLY_32G).model_id == "phi-3-mini-4k-cpu"


def test_paths_and_unknown_names():
    assert resolve(str(MODELS / "tiny-phi3-int4")).model_id is None
    with pytest.raises(ModelNotFoundError, match="not found"):
        resolve("no-such-model")
    with pytest.raises(ModelNotFoundError, match="no such folder"):
        resolve("./no/such/folder")


# -- custom models -------------------------------------------------------------------------------


def test_custom_folder_is_validated_resolved_and_unregistered_without_deleting(tmp_path):
    folder = tmp_path / "mine"
    shutil.copytree(MODELS / "tiny-qwen2-fp32", folder)
    add_custom_model("my-qwen", path=folder)
    assert resolve("my-qwen").folder.path == folder.resolve()
    assert remove_custom_model("my-qwen")
    assert get_custom_model("my-qwen") is None
    assert (folder / "genai_config.json").is_file()


def test_custom_models_are_checked(tmp_path):
    with pytest.raises(InvalidModelError, match="genai_config.json"):
        add_custom_model("empty", path=tmp_path)
    with pytest.raises(UsageError, match="already a catalog model"):
        add_custom_model("phi-3-mini-4k", repo="a/b")
    with pytest.raises(UsageError, match="Invalid --subfolder"):
        add_custom_model("sneaky", repo="a/b", subfolder="../../etc")
    with pytest.raises(UsageError, match="not a hub repo id"):
        add_custom_model("bad", repo="not-a-repo")
    with pytest.raises(UsageError, match="Invalid model name"):
        add_custom_model("../up", repo="a/b")


def test_custom_hub_model_is_a_download_source():
    add_custom_model("tjs", repo="onnx-community/tiny", subfolder="onnx/")
    source, note = download_source("tjs")
    assert (source.id, source.repo, source.subfolder, source.origin) == (
        "tjs", "onnx-community/tiny", "onnx", "custom")
    assert note is None
    with pytest.raises(NotInstalledError):
        resolve("tjs")


def test_onnx_info_reports_the_recommendation():
    from agentic_onnx.core.machine.system_report import model_recommendation

    report = {"memory": {"total_bytes": 8 * GIB}, "gpus": [],
              "execution_providers": {"available": ["cpu"]}}
    assert model_recommendation(report)["model_id"] == "phi-3-mini-4k-cpu"
    report["gpus"] = [{"memory_total_bytes": 24 * GIB}]
    report["execution_providers"]["available"] = ["cuda", "cpu"]
    report["memory"]["total_bytes"] = 32 * GIB
    assert model_recommendation(report) == {
        "model_id": "phi-3-mini-4k-gpu", "installed": False,
        "reason": "a CUDA GPU with 24 GiB is usable", "estimated_tokens_per_s": None,
        "estimate_bound": None}
    report["speed"] = {"read_bandwidth_gbps": 40.0, "threads": 2, "simd": list(AVX512)}
    report["gpus"] = [{"memory_total_bytes": 24 * GIB, "name": "NVIDIA GeForce RTX 4090",
                       "memory_bandwidth_bytes_per_s": None}]
    with_speed = model_recommendation(report)
    assert with_speed["model_id"] == "phi-3-mini-4k-gpu"
    assert with_speed["estimate_bound"] == "GPU memory bandwidth"
    assert with_speed["estimated_tokens_per_s"] == pytest.approx(235, abs=5)  # 1008 GB/s by name
    report["gpus"], report["execution_providers"]["available"] = [], ["cpu"]
    assert model_recommendation(report)["model_id"] == "phi-3-mini-4k-cpu"  # 2 cores: not medium
    shown = run_cli("onnx", "info", "--json")
    assert shown.returncode == 0, shown.stderr
    assert load_catalog().get(json.loads(shown.stdout)["recommendation"]["model_id"]) is not None


def test_vision_entries_are_marked_and_shown():
    catalog = load_catalog()
    vision = [entry for entry in catalog.models if "vision" in entry.capabilities]
    assert {entry.id for entry in vision} >= {"phi-3.5-vision-cpu", "phi-3.5-vision-gpu"}
    assert all(entry.repo == "microsoft/Phi-3.5-vision-instruct-onnx" for entry in vision)
    assert "vision" not in catalog.get("phi-3.5-mini-cpu").capabilities
    listed = json.loads(run_cli("onnx", "models", "--json").stdout)
    capabilities = {row["id"]: row["capabilities"] for row in listed}
    assert capabilities["phi-3.5-vision-cpu"] == ["chat", "vision"]
    assert capabilities["phi-3.5-mini-cpu"] == ["chat"]
    table = run_cli("onnx", "models", env={"COLUMNS": "200"}).stdout
    rows = models_table_column(table, "vision")
    assert rows["phi-3.5-vision-cpu"] == rows["phi-3.5-vision-gpu"] == "yes"
    assert rows["phi-3.5-mini-cpu"] == "-"


def test_the_download_offer_gives_an_eta_once_a_download_speed_is_known():
    from agentic_onnx.core.models import download_rate

    mini = load_catalog().get("phi-3-mini-4k-cpu")
    download_rate.record(64 * 1024, 1.0)  # too small to say anything about the link: ignored
    assert "last download" not in download_summary(mini, TWO_CORES_24G, 50_000_000_000)
    download_rate.record(50_000_000, 10.0)  # 5 MB/s
    assert download_summary(mini, TWO_CORES_24G, 50_000_000_000) == (
        f"2.7 GB; 47.3 GB free after; ~{mini.size_bytes / 5e6 / 60:.0f} min at your last "
        "download's speed (5.0 MB/s); ~11 tok/s here")
