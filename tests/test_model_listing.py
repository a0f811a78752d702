"""What `onnx models` and `onnx list` say about each model, what `onnx remove` decides, and the
model `run` and `chat` use: core functions (core/models/listing.py, removal.py, resolve.py), on a
real store in the hermetic home."""

from __future__ import annotations

import pytest

from agentic_onnx.core.errors import InvalidModelNameError, ModelNotFoundError, NotInstalledError
from agentic_onnx.core.models import listing, removal
from agentic_onnx.core.models.custom_models import add_custom_model, get_custom_model
from agentic_onnx.core.models.recommend import MachineFacts
from agentic_onnx.core.models.resolve import resolve_for_use
from agentic_onnx.core.models.store import model_dir, read_manifest

from .conftest import MODELS
from .fake_hub import install_fixture

GIB = 2**30
TINY = MODELS / "tiny-phi3-fp32"
CPU_ONLY_16G = MachineFacts(16 * GIB, (), ("cpu",))


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr("agentic_onnx.core.models.recommend.probe_machine", lambda: CPU_ONLY_16G)


def test_catalog_rows_join_the_catalog_this_machine_and_the_store(cpu_only):
    install_fixture("phi-3-mini-4k-cpu", "tiny-phi3-int4")
    add_custom_model("my-hub-model", repo="org/model", subfolder="cpu")
    add_custom_model("my-folder", path=TINY)
    rows = {row["id"]: row for row in listing.catalog_rows()}
    cpu, gpu = rows["phi-3-mini-4k-cpu"], rows["phi-3-mini-4k-gpu"]
    assert (cpu["origin"], cpu["installed"], cpu["fits"], cpu["fit_reason"]) == \
        ("catalog", True, True, "runs on the CPU")
    assert (gpu["installed"], gpu["fits"], gpu["fit_reason"]) == (False, False, "CUDA not available")
    assert cpu["estimated_tokens_per_s"] is None  # no speed facts: no estimate
    assert sum(row["recommended"] for row in rows.values()) == 1
    hub, folder = rows["my-hub-model"], rows["my-folder"]
    assert (hub["origin"], hub["repo"], hub["subfolder"], hub["installed"], hub["fits"]) == \
        ("custom", "org/model", "cpu", False, None)
    assert (folder["installed"], folder["path"], folder["fit_reason"]) == \
        (True, str(TINY), "unknown for custom models")
    assert list(rows)[-2:] == ["my-hub-model", "my-folder"]  # custom models follow the catalog


def test_unfit_models_are_grouped_by_reason_in_row_order():
    rows = [{"id": "a", "fits": False, "fit_reason": "CUDA not available"},
            {"id": "b", "fits": True, "fit_reason": "runs on the CPU"},
            {"id": "c", "fits": None, "fit_reason": "unknown for custom models"},
            {"id": "d", "fits": False, "fit_reason": "needs 64 GiB RAM (has 16.0)"},
            {"id": "e", "fits": False, "fit_reason": "CUDA not available"}]
    assert listing.unfit_by_reason(rows) == {"CUDA not available": ["a", "e"],
                                             "needs 64 GiB RAM (has 16.0)": ["d"]}


def test_installed_rows_list_the_store_and_linked_models_with_their_adapters():
    folder = install_fixture("phi-3-mini-4k-cpu", "tiny-phi3-int4")
    (folder / "adapters").mkdir()
    (folder / "adapters" / "legal.onnx_adapter").write_bytes(b"12345")
    add_custom_model("my-folder", path=TINY)
    rows = listing.installed_rows()
    assert [row["id"] for row in rows] == ["phi-3-mini-4k-cpu", "my-folder"]
    stored, linked = rows
    files = [path for path in folder.rglob("*") if path.is_file()]
    assert stored["size_bytes"] == sum(path.stat().st_size for path in files)
    assert (stored["linked"], stored["origin"], stored["commit"]) == (False, "catalog", "0" * 40)
    assert stored["adapters"] == [{"name": "legal", "path": str(folder / "adapters" / "legal.onnx_adapter"),
                                   "size_bytes": 5}]
    assert (linked["linked"], linked["origin"], linked["path"], linked["adapters"]) == \
        (True, "linked", str(TINY), [])


def test_installed_rows_are_empty_without_a_store():
    assert listing.installed_rows() == []


def test_size_on_disk_counts_files_not_links(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "a.onnx").write_bytes(b"x" * 10)
    (tmp_path / "model" / "sub").mkdir()
    (tmp_path / "model" / "sub" / "b.json").write_bytes(b"y" * 3)
    (tmp_path / "big").write_bytes(b"z" * 1000)
    (tmp_path / "model" / "link").symlink_to(tmp_path / "big")
    assert listing.size_on_disk(tmp_path / "model") == 13


# -- onnx remove -------------------------------------------------------------------------------


def test_a_linked_model_is_unregistered_and_its_folder_left_alone():
    add_custom_model("my-folder", path=TINY)
    plan = removal.plan_removal("my-folder")
    assert (plan.action, plan.folder, plan.deletes_files) == ("unlink", TINY, False)
    removal.carry_out(plan)
    assert get_custom_model("my-folder") is None and (TINY / "genai_config.json").is_file()


def test_a_custom_hub_model_never_downloaded_is_unregistered():
    add_custom_model("my-hub-model", repo="org/model")
    plan = removal.plan_removal("my-hub-model")
    assert (plan.action, plan.deletes_files, plan.registered) == ("unregister", False, True)
    removal.carry_out(plan)
    assert get_custom_model("my-hub-model") is None


def test_a_store_model_is_deleted_with_its_registration():
    install_fixture("phi-3-mini-4k-cpu", "tiny-phi3-int4")
    plan = removal.plan_removal("phi-3-mini-4k-cpu")
    assert (plan.action, plan.folder, plan.registered) == \
        ("delete", model_dir("phi-3-mini-4k-cpu"), False)
    removal.carry_out(plan)
    assert not model_dir("phi-3-mini-4k-cpu").exists()
    add_custom_model("my-hub-model", repo="org/model")
    install_fixture("my-hub-model", "tiny-phi3-int4")  # downloaded
    plan = removal.plan_removal("my-hub-model")
    assert (plan.action, plan.registered) == ("delete", True)
    removal.carry_out(plan)
    assert not model_dir("my-hub-model").exists() and get_custom_model("my-hub-model") is None


def test_nothing_to_remove_is_model_not_found_and_a_bad_name_a_usage_error():
    with pytest.raises(ModelNotFoundError, match="'phi-3-mini-4k-cpu' is not installed") as error:
        removal.plan_removal("phi-3-mini-4k-cpu")
    assert error.value.exit_code == 3
    with pytest.raises(InvalidModelNameError) as error:
        removal.plan_removal("../../etc")
    assert error.value.exit_code == 2


# -- the model run and chat use ----------------------------------------------------------------


def test_resolve_for_use_records_the_last_use_of_a_store_model():
    install_fixture("phi-3-mini-4k-cpu", "tiny-phi3-int4")
    assert read_manifest("phi-3-mini-4k-cpu").last_used_at is None
    resolution = resolve_for_use("phi-3-mini-4k-cpu")
    assert resolution.model_id == "phi-3-mini-4k-cpu"
    assert resolution.folder.path == model_dir("phi-3-mini-4k-cpu")
    assert read_manifest("phi-3-mini-4k-cpu").last_used_at is not None
    assert resolve_for_use(str(TINY)).model_id is None  # a folder: nothing to record


def test_resolve_for_use_names_the_model_to_download():
    with pytest.raises(NotInstalledError) as error:
        resolve_for_use("phi-3-mini-4k-cpu")
    assert error.value.model_id == "phi-3-mini-4k-cpu"
    assert error.value.download_command == "agentic-onnx onnx download phi-3-mini-4k-cpu"
