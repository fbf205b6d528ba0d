"""The open_clip encoder's options and where its weights come from, checkable in well under a second.

Importing open_clip imports torch and torchvision (3–4 s on a busy 2-core machine), which would make every
command wait that long before saying that a tag is misspelt or a checkpoint path is wrong. So this module
needs neither: ``OpenClipEncoderConfig`` is plain pydantic, architectures are read from open_clip's JSON
configs, and pretrained tags from open_clip's own table and download functions (``open_clip_pretrained``).
``hashing/encoders/open_clip_encoder.py`` builds the model from what is settled here.

Pretrained tags behave as in open_clip: the file is taken from the local cache, else downloaded from the
Hugging Face hub into that cache (once; later runs and Ray workers find it there). ``HF_HUB_OFFLINE=1``
(or ``TRANSFORMERS_OFFLINE=1``, which huggingface_hub treats the same) never touches the network.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"

HOW_TO_PROVIDE_WEIGHTS = (
    "Provide CLIP weights in one of these ways:\n"
    "  --clip-pretrained TAG    an open_clip pretrained tag (e.g. 'openai' for ViT-B-32), as open_clip loads "
    "it: from the local cache (the Hugging Face hub cache, see HF_HOME/HF_HUB_CACHE, or ~/.cache/clip), else "
    "downloaded once from the Hugging Face hub into that cache. With HF_HUB_OFFLINE=1 only the cache is used: "
    "fill it on a machine with internet access (e.g. `hf download timm/vit_base_patch32_clip_224.openai`) "
    "and copy it over;\n"
    "  --clip-checkpoint PATH   a local open_clip checkpoint or state-dict file "
    "(.pt/.pth/.bin/.safetensors) for this architecture;\n"
    "  --random-weights         seeded random weights, for tests and demos only "
    "(text search is then at chance level)."
)

# One request without retries decides whether the hub can be reached: huggingface_hub itself retries a failed
# connection 5 times with back-off (23 s per file, and open_clip asks for two files) before giving up.
HUB_PROBE_TIMEOUT_S = 5.0

# The name under which open_clip's pretrained.py is loaded on its own (see open_clip_pretrained).
LIGHT_OPEN_CLIP_PACKAGE = "reelhash_open_clip_without_torch"

# The devices hashing/encoders/device.py's select_device accepts.
DEVICE_PATTERN = re.compile(r"auto|(cpu|cuda|mps)(:\d+)?")

# open_clip keeps only JSON files that describe a whole CLIP (its factory._rescan_model_configs).
_MODEL_CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")

logger = logging.getLogger(__name__)


class WeightsUnavailableError(RuntimeError):
    """No usable CLIP weights: none configured, not in the cache and not downloadable, missing or unloadable file."""


class OpenClipEncoderConfig(BaseModel):
    """Which open_clip model to run, with which weights, where and how fast."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["open_clip"] = "open_clip"
    arch: str = "ViT-B-32"
    pretrained: str | None = None
    checkpoint_path: str | None = None
    allow_random_weights: bool = False
    random_seed: int = Field(default=0, ge=0)
    device: str = "auto"
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        default="auto", description="auto: fp16 autocast on CUDA; on a CPU with native bf16 (AVX512_BF16 or AMX) "
                                    "the image tower in bf16, texts in fp32; fp32 elsewhere (docs/encoders.md). "
                                    "Embeddings move by float noise only, so it is not part of the encoder id"
    )
    batch_size: int = Field(default=64, gt=0, description="images or texts per forward pass")
    cpu_streams: int | None = Field(
        default=None, ge=1, description="on a CPU, forward passes of images run side by side, each on one thread; "
                                        "None = one per torch thread, 1 = one pass at a time on all threads "
                                        "(docs/encoders.md, 'Threads')"
    )
    cache_dir: str | None = Field(
        default=None, description="open_clip/HF cache dir for pretrained tags (looked in, downloaded to); "
                                  "None = the default caches"
    )

    @field_validator("pretrained", "checkpoint_path", "cache_dir", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _one_weights_source(self) -> OpenClipEncoderConfig:
        if self.pretrained is not None and self.checkpoint_path is not None:
            raise ValueError(
                "give either pretrained (an open_clip tag) or checkpoint_path (a local file), not both"
            )
        return self

    @classmethod
    def from_description(cls, description: Mapping[str, Any], **runtime: Any) -> OpenClipEncoderConfig:
        """Rebuild the config of an encoder from its ``describe()`` output (e.g. stored with features).

        ``runtime`` sets the fields that do not change embeddings: device, precision, batch_size, cpu_streams,
        cache_dir.
        """
        if description.get("encoder") != "open_clip":
            raise ValueError(f"not an open_clip encoder description: {dict(description)!r}")
        random_weights = bool(description["random_weights"])
        return cls(
            arch=description["arch"],
            pretrained=description.get("pretrained"),
            checkpoint_path=description.get("checkpoint_path"),
            allow_random_weights=random_weights,
            random_seed=description.get("random_seed") or 0,
            **runtime,
        )


# --- open_clip's tables, without torch ---------------------------------------------------------


def open_clip_dir() -> Path:
    """open_clip's package directory, found without importing it."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("open_clip is not installed (pip install open_clip_torch)")
    return Path(list(spec.submodule_search_locations)[0])


def open_clip_pretrained() -> ModuleType:
    """open_clip's ``pretrained`` module: its table of tags and the download functions open_clip itself uses.

    When open_clip is already imported this is ``open_clip.pretrained``. Otherwise the same file is loaded on
    its own (with its two torch-free siblings, constants.py and version.py) instead of through open_clip's
    ``__init__``, which imports torch and torchvision: 0.1 s instead of 3–4 s.
    """
    if "open_clip" in sys.modules:
        import open_clip.pretrained

        return open_clip.pretrained
    return load_pretrained_without_torch()


def open_clip_torch_free_module(name: str) -> ModuleType:
    """open_clip's ``constants`` or ``version`` module, loaded like ``open_clip_pretrained`` (without torch)."""
    if name not in ("constants", "version", "pretrained"):
        raise ValueError(f"open_clip's {name!r} module needs torch")
    if "open_clip" in sys.modules:
        return importlib.import_module(f"open_clip.{name}")
    load_pretrained_without_torch()  # pretrained.py imports both siblings
    return sys.modules[f"{LIGHT_OPEN_CLIP_PACKAGE}.{name}"]


def load_pretrained_without_torch() -> ModuleType:
    """A private copy of open_clip's pretrained.py, loaded without open_clip's ``__init__`` (see above)."""
    loaded = sys.modules.get(f"{LIGHT_OPEN_CLIP_PACKAGE}.pretrained")
    if loaded is not None:
        return loaded
    package_spec = importlib.machinery.ModuleSpec(LIGHT_OPEN_CLIP_PACKAGE, None, is_package=True)
    package_spec.submodule_search_locations = [str(open_clip_dir())]
    sys.modules[LIGHT_OPEN_CLIP_PACKAGE] = importlib.util.module_from_spec(package_spec)
    # pretrained.py imports safetensors.torch (hence torch) only to learn whether .safetensors files can be
    # loaded; None in sys.modules makes that import fail fast, and the answer is set below instead.
    block = "safetensors.torch" not in sys.modules and "torch" not in sys.modules
    if block:
        sys.modules["safetensors.torch"] = None  # type: ignore[assignment]
    try:
        module = importlib.import_module(f"{LIGHT_OPEN_CLIP_PACKAGE}.pretrained")
    finally:
        if block:
            del sys.modules["safetensors.torch"]
    # With safetensors installed open_clip prefers a tag's .safetensors file; so must this copy, so that it
    # downloads the file open_clip would.
    module._has_safetensors = importlib.util.find_spec("safetensors") is not None
    return module


def clean_tag(tag: str) -> str:
    """A tag as open_clip normalises it ("LAION2B-s34B" == "laion2b_s34b")."""
    return tag.lower().replace("-", "_")


def pretrained_cfg(arch: str, tag: str) -> dict[str, Any]:
    """open_clip's entry for pretrained tag ``tag`` of ``arch`` (hf_hub, url, mean/std, quick_gelu, ...)."""
    pretrained = open_clip_pretrained()
    tag_cfg = pretrained.get_pretrained_cfg(arch, tag)
    if not tag_cfg:
        known = pretrained.list_pretrained_tags_by_model(arch)
        raise WeightsUnavailableError(
            f"{tag!r} is not an open_clip pretrained tag for arch {arch!r} "
            f"(known tags: {', '.join(known) or 'none'}).\n{HOW_TO_PROVIDE_WEIGHTS}"
        )
    return dict(tag_cfg)


def arch_model_cfg(arch: str) -> dict[str, Any]:
    """The architecture config open_clip would build ``arch`` from, read from its JSON file.

    reelhash's own configs (model_configs/, e.g. reelhash-tiny) come first, as in open_clip once
    ``register_model_configs`` has added them. ValueError for an unknown architecture, or one that would
    fetch a tokenizer or text tower from the Hugging Face hub at build time.
    """
    model_cfg = None
    if arch and "/" not in arch and ":" not in arch:  # hf-hub:/local-dir: names and paths fetch or read elsewhere
        for directory in (MODEL_CONFIG_DIR, open_clip_dir() / "model_configs"):
            path = directory / f"{arch}.json"
            if path.is_file():
                candidate = json.loads(path.read_text())
                if all(key in candidate for key in _MODEL_CONFIG_KEYS):
                    model_cfg = candidate
                    break
    if model_cfg is None:
        raise ValueError(
            f"unknown open_clip architecture {arch!r}; use a built-in name such as 'ViT-B-32', "
            "'ViT-B-16', 'ViT-L-14' or reelhash's 'reelhash-tiny' (see open_clip.list_models())"
        )
    text_cfg = model_cfg.get("text_cfg", {})
    if text_cfg.get("hf_tokenizer_name") or text_cfg.get("hf_model_name") or "siglip" in arch.lower():
        raise ValueError(
            f"open_clip architecture {arch!r} needs a Hugging Face tokenizer or text model, which reelhash "
            "does not fetch; use an arch with open_clip's built-in tokenizer (e.g. ViT-B-32)"
        )
    return model_cfg


# --- pretrained weights: the cache, else the hub -------------------------------------------------


def hub_offline() -> bool:
    """Whether huggingface_hub is in offline mode (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE, read at its import)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hf_weight_filenames(hf_hub: str) -> tuple[str, list[str]]:
    """The repository of an open_clip ``hf_hub`` entry and its files in open_clip's order of preference.

    open_clip's convention: "org/repo/" names the default file; a .safetensors twin of a .bin/.pth file, or of
    the default file, is tried first (open_clip.pretrained.download_pretrained_from_hf).
    """
    pretrained = open_clip_pretrained()
    repo_id, filename = os.path.split(hf_hub)
    filename = filename or pretrained.HF_WEIGHTS_NAME
    if filename == pretrained.HF_WEIGHTS_NAME:
        return repo_id, [pretrained.HF_SAFE_WEIGHTS_NAME, filename]
    if filename.endswith((".bin", ".pth")):
        return repo_id, [filename[:-4] + ".safetensors", filename]
    return repo_id, [filename]


def cache_candidates(tag_cfg: Mapping[str, Any], cache_dir: str | None) -> list[tuple[str, Path | None]]:
    """Where open_clip keeps a tag's file, in its order of preference: (description, the file if it is there).

    The Hugging Face hub cache first (where ``hf_hub_download`` puts it), then the URL download directory
    (``~/.cache/clip``) of open_clip's older downloads. Looks at files only: no network.
    """
    candidates: list[tuple[str, Path | None]] = []
    if tag_cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo_id, names = hf_weight_filenames(tag_cfg["hf_hub"])
        for name in names:
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            path = Path(found) if isinstance(found, str) and os.path.isfile(found) else None
            candidates.append((f"Hugging Face cache: {repo_id}/{name}", path))
    if tag_cfg.get("url"):
        path = Path(cache_dir or "~/.cache/clip").expanduser() / os.path.basename(tag_cfg["url"])
        candidates.append((f"download cache: {path}", path if path.is_file() else None))
    return candidates


def cached_pretrained(arch: str, tag: str, cache_dir: str | None = None) -> Path | None:
    """The cached file of open_clip tag ``tag`` for ``arch``, or None; never touches the network."""
    tag_cfg = pretrained_cfg(arch, tag)
    if "file" in tag_cfg and os.path.isfile(tag_cfg["file"]):
        return Path(tag_cfg["file"])
    return next((path for _, path in cache_candidates(tag_cfg, cache_dir) if path is not None), None)


def find_cached_pretrained(arch: str, tag: str, cache_dir: str | None = None) -> Path:
    """Like ``cached_pretrained``, but WeightsUnavailableError (saying where it looked) when not cached."""
    found = cached_pretrained(arch, tag, cache_dir)
    if found is None:
        raise WeightsUnavailableError(
            f"weights for open_clip arch {arch!r} tag {tag!r} are not in the local cache "
            f"(looked for: {looked_in(arch, tag, cache_dir)}).\n{HOW_TO_PROVIDE_WEIGHTS}"
        )
    return found


def looked_in(arch: str, tag: str, cache_dir: str | None) -> str:
    return "; ".join(description for description, _ in cache_candidates(pretrained_cfg(arch, tag), cache_dir))


def download_source(tag_cfg: Mapping[str, Any]) -> str:
    """The URL open_clip downloads a tag's (first choice of) file from."""
    if tag_cfg.get("hf_hub"):
        from huggingface_hub import hf_hub_url

        repo_id, names = hf_weight_filenames(tag_cfg["hf_hub"])
        return hf_hub_url(repo_id, names[0])
    return str(tag_cfg.get("url", ""))


def download_cache(tag_cfg: Mapping[str, Any], cache_dir: str | None) -> str:
    """The directory open_clip downloads a tag's file into."""
    if cache_dir:
        return cache_dir
    if tag_cfg.get("hf_hub"):
        from huggingface_hub import constants

        return constants.HF_HUB_CACHE
    return str(Path("~/.cache/clip").expanduser())


def unreachable_reason(url: str, timeout_s: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why ``url`` cannot be reached (one request through huggingface_hub's HTTP session), or None if it answers.

    Any answer, even 404 or 401, means the hub is reachable: the download then reports what is wrong.
    """
    from huggingface_hub import get_session

    try:
        get_session().head(url, timeout=timeout_s, follow_redirects=False)
    except Exception as error:  # noqa: BLE001  (DNS, refused, timeout, proxy, TLS: whatever stops an answer)
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return None


def download_pretrained(arch: str, tag: str, cache_dir: str | None = None,
                        log: Callable[[str], None] | None = None) -> Path:
    """Download the weights of open_clip tag ``tag`` for ``arch`` into the cache, exactly as open_clip would.

    Raises WeightsUnavailableError in offline mode (without touching the network), when the hub cannot be
    reached, or when the download fails.
    """
    tag_cfg = pretrained_cfg(arch, tag)
    where = f"open_clip arch {arch!r} tag {tag!r}"
    if hub_offline():
        raise WeightsUnavailableError(
            f"weights for {where} are not in the local cache and HF_HUB_OFFLINE is set, so they are not "
            f"downloaded (looked for: {looked_in(arch, tag, cache_dir)}).\n{HOW_TO_PROVIDE_WEIGHTS}"
        )
    url = download_source(tag_cfg)
    reason = unreachable_reason(url)
    if reason is not None:
        raise WeightsUnavailableError(
            f"weights for {where} are not in the local cache, and the Hugging Face hub could not be "
            f"reached to download them ({url}: {reason}).\n{HOW_TO_PROVIDE_WEIGHTS}"
        )
    (log or logger.info)(f"downloading the weights of {where} from {url} into {download_cache(tag_cfg, cache_dir)} "
                         "(once: later runs take them from there)")
    try:
        target = open_clip_pretrained().download_pretrained(tag_cfg, cache_dir=cache_dir)
    except Exception as error:  # noqa: BLE001  (open_clip wraps every hub error in FileNotFoundError)
        raise WeightsUnavailableError(
            f"could not download the weights of {where} from {url}: {error}\n{HOW_TO_PROVIDE_WEIGHTS}"
        ) from error
    if not target or not os.path.isfile(target):
        raise WeightsUnavailableError(f"open_clip downloaded no weights file for {where}.\n{HOW_TO_PROVIDE_WEIGHTS}")
    return Path(target)


def pretrained_weights_file(arch: str, tag: str, cache_dir: str | None = None,
                            log: Callable[[str], None] | None = None) -> Path:
    """The local file of open_clip tag ``tag``: from the cache, else downloaded into it (unless offline)."""
    found = cached_pretrained(arch, tag, cache_dir)
    return found if found is not None else download_pretrained(arch, tag, cache_dir, log)


# --- checking a config -------------------------------------------------------------------------


def checkpoint_file(checkpoint_path: str) -> Path:
    """The absolute path of a checkpoint option, or WeightsUnavailableError when it is not a file."""
    path = Path(checkpoint_path).expanduser().resolve()
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise WeightsUnavailableError(f"CLIP checkpoint {path} {what}.\n{HOW_TO_PROVIDE_WEIGHTS}")
    return path


def weights_file(config: OpenClipEncoderConfig, log: Callable[[str], None] | None = None) -> Path | None:
    """The local file of the configured weights (a pretrained tag's is downloaded if needed); None = random.

    WeightsUnavailableError, saying how to fix it, when there is no such file and random weights were not
    explicitly allowed.
    """
    if config.checkpoint_path is not None:
        return checkpoint_file(config.checkpoint_path)
    if config.pretrained is not None:
        return pretrained_weights_file(config.arch, config.pretrained, config.cache_dir, log)
    if not config.allow_random_weights:
        raise WeightsUnavailableError(
            f"no weights configured for open_clip arch {config.arch!r}, and random weights were not "
            f"explicitly allowed.\n{HOW_TO_PROVIDE_WEIGHTS}"
        )
    return None


def check_weights_available(config: OpenClipEncoderConfig, log: Callable[[str], None] | None = None) -> None:
    """Raise now what building the encoder would raise for lack of weights or an unknown architecture.

    Loads no weights, hashes no file and imports no torch. A pretrained tag's file not yet in the cache is
    downloaded here, so a command that calls this before starting Ray downloads it once, not once per worker.
    """
    arch_model_cfg(config.arch)
    weights_file(config, log)


def check_device(device: str) -> None:
    """ValueError for a device that cannot be used here.

    The spelling is checked without torch, and 'auto' and 'cpu' can always be used; only an accelerator asked
    for by name costs a torch import (~2 s) to ask torch whether it is there, as the encoder will.
    """
    choice = device.strip().lower()
    if DEVICE_PATTERN.fullmatch(choice) is None:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if choice == "auto" or choice.startswith("cpu"):
        return
    from hashing.encoders.device import select_device

    select_device(device)


def check_encoder_options(config: OpenClipEncoderConfig, log: Callable[[str], None] | None = None) -> None:
    """Everything building the encoder could object to, before any model, Prefect or Ray start-up.

    The cheap checks first: a misspelt device should not wait for a download.
    """
    arch_model_cfg(config.arch)
    check_device(config.device)
    weights_file(config, log)
