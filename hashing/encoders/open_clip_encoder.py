"""CLIP frame, clip and text encoder on top of open_clip.

Weights come from exactly one place: a local checkpoint file, an open_clip pretrained tag (from the local
cache, else downloaded into it as open_clip does; never with HF_HUB_OFFLINE=1), or (only when explicitly
allowed) a seeded random init. The config and the weight look-up live in ``hashing/encoders/weights.py``,
which needs no torch, so commands can check them before anything heavy starts.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from hashing.encoders.base import FrameSpec, check_clips, check_frames
from hashing.encoders.device import batch_size_for_device, select_device
from hashing.encoders.identity import ResolvedWeights, open_clip_identity
from hashing.encoders.weights import (
    HOW_TO_PROVIDE_WEIGHTS,
    MODEL_CONFIG_DIR,
    OpenClipEncoderConfig,
    WeightsUnavailableError,
)



def register_model_configs() -> None:
    """Make reelhash's own architectures (model_configs/*.json, e.g. reelhash-tiny) known to open_clip.

    Idempotent: open_clip appends to its search path on every call, so only register once per process.
    """
    ours = {path.stem for path in MODEL_CONFIG_DIR.glob("*.json")}
    if not ours.issubset(open_clip.list_models()):
        open_clip.add_model_config(MODEL_CONFIG_DIR)


def encode_text_trimmed(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(tokens)`` computed only up to the batch's last non-padding token.

    CLIP pads every caption to 77 tokens, but its text transformer is causal: the output at a position depends only
    on the positions before it, and the pooled output is taken at the end-of-text token. Dropping the padding
    after the longest caption therefore gives the same embedding (within 2e-6) with about 6× less work for captions
    of ~12 tokens (ViT-B-32 on this project's 2-core machine: 0.68 s instead of 3.8 s for 60 captions). Models
    without a causal mask or with another pooling take open_clip's own path.
    """
    pooled_at_token = getattr(model, "text_pool_type", None) in ("argmax", "eos")
    if not (isinstance(model, open_clip.model.CLIP) and pooled_at_token and getattr(model, "attn_mask", None) is not None
            and tokens.ndim == 2 and tokens.shape[1] == model.positional_embedding.shape[0]):
        return model.encode_text(tokens)
    positions = torch.arange(1, tokens.shape[1] + 1, device=tokens.device)
    length = max(1, int(((tokens != 0) * positions).max()))
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = open_clip.transformer.text_global_pool(x, tokens, model.text_pool_type,
                                               eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else x @ model.text_projection
    return x


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype forward passes autocast to, or None. On a CPU, bf16 images skip it: see ``_image_tower_dtype``."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (x86 AVX512_BF16 or AMX), through oneDNN.

    Without it bf16 matrix products are emulated through fp32 and are not expected to pay (not measured: this
    project's machine has native bf16), so precision "auto" stays fp32 there. torch's probes are private; if they
    are missing, the CPU's flags are read instead (Linux), and unknown means no.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(probe is not None for probe in probes):
        try:
            return any(bool(probe()) for probe in probes)
        except Exception:  # noqa: BLE001  (a private probe that changed: fall back to the flags)
            pass
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _image_tower_dtype(precision: str, device: torch.device, native_bf16: bool | None = None) -> torch.dtype | None:
    """The dtype the image tower's weights are cast to once when the encoder is built, or None (fp32 weights).

    On a CPU, bf16 runs as open_clip's own "bf16" precision does: linear, convolution and attention weights in bf16,
    LayerNorm parameters and embeddings in fp32, and no autocast. For ViT-B-32 on a CPU with native bf16 that is
    about 3.6x faster than fp32, while bf16 autocast (what "bf16" did on a CPU before) gains 1.5x at a batch of 64
    and loses at small batches: under autocast torch's MultiheadAttention leaves its fused path, and its packed
    input projection copies the weight once per token position (docs/encoders.md, "CPU inference"). "auto" takes
    it where the CPU has native bf16 (``cpu_has_native_bf16``), "bf16" always; other devices keep fp32 weights and
    their autocast.
    """
    if device.type != "cpu":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
        return torch.bfloat16 if native else None
    return None


def _cast_image_tower(model: torch.nn.Module, dtype: torch.dtype) -> bool:
    """Cast the image tower's weights to ``dtype`` as open_clip's ``precision="bf16"`` does; False if it cannot.

    Only open_clip's own VisionTransformer is known to run this way (timm or ResNet towers are left in fp32).
    The text tower is left alone: it keeps fp32 weights and the configured autocast.
    """
    visual = getattr(model, "visual", None)
    if not isinstance(visual, open_clip.transformer.VisionTransformer):
        return False
    open_clip.model.convert_weights_to_lp(visual, dtype=dtype)
    return True


def _frame_spec_of(model: torch.nn.Module) -> FrameSpec:
    visual = model.visual
    size = visual.image_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height != width:
        raise ValueError(f"only square image inputs are supported, the model expects {height}x{width}")
    preprocess = getattr(visual, "preprocess_cfg", {})
    mean = tuple(float(v) for v in preprocess.get("mean", visual.image_mean or open_clip.OPENAI_DATASET_MEAN))
    std = tuple(float(v) for v in preprocess.get("std", visual.image_std or open_clip.OPENAI_DATASET_STD))
    return FrameSpec(size=int(height), mean=mean, std=std)  # type: ignore[arg-type]


def _create_model(arch: str, weights: ResolvedWeights, seed: int) -> torch.nn.Module:
    # Built on the CPU under a fixed seed so random weights are identical in every process
    # (an index built by a Ray actor must match queries encoded later by the CLI); fork_rng
    # keeps the caller's global RNG state untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = open_clip.create_model(
                arch,
                # An absolute file path, so open_clip never mistakes it for a tag to download.
                pretrained=str(weights.file) if weights.file is not None else None,
                force_quick_gelu=weights.force_quick_gelu,
                force_preprocess_cfg=weights.preprocess_overrides or None,
                pretrained_image=False,  # no timm / HF tower downloads
                pretrained_text=False,
                precision="fp32",
                device="cpu",
            )
        except Exception as error:
            if weights.file is None:
                raise
            raise WeightsUnavailableError(
                f"could not load CLIP weights from {weights.file} into open_clip arch {arch!r}: {error}\n"
                "Check that the checkpoint was trained for this architecture (a raw state dict, or "
                "{'state_dict': ...}, optionally with 'module.' prefixes).\n" + HOW_TO_PROVIDE_WEIGHTS
            ) from error
    return model.eval()


def cpu_stream_count(configured: int | None, device: torch.device, torch_threads: int) -> int:
    """Forward passes run side by side: on a CPU ``configured``, else one per torch thread; elsewhere 1.

    On a CPU, one pass spread over T threads makes every op wait for its slowest thread, and a thread that loses
    its core for a moment (to a decoder beside it) holds the others up. T passes of one thread each never wait for
    one another: on this project's 2-core machine ViT-B-32 encodes about as fast alone, and `reelhash index` ran
    12-15 % more clips per second, with the same embeddings (docs/encoders.md, "Threads").
    """
    if device.type != "cpu":
        return 1
    return configured if configured is not None else max(1, torch_threads)


class OpenClipEncoder:
    """open_clip CLIP as a MediaEncoder: per-frame image embeddings, mean-pooled per clip, and text embeddings."""

    def __init__(self, config: OpenClipEncoderConfig) -> None:
        self._config = config
        self._identity = open_clip_identity(config)
        register_model_configs()  # reelhash's own architectures (model_configs/) become known to open_clip
        self._weights = self._identity.weights
        self._device = select_device(config.device)
        self._autocast_dtype = _autocast_dtype(config.precision, self._device)

        self._model = _create_model(config.arch, self._weights, config.random_seed).to(self._device)
        # Images in bf16 on a CPU: weights cast once here instead of autocast (see _image_tower_dtype). None: the
        # image tower keeps fp32 weights and frames run under self._autocast() as texts do.
        image_dtype = _image_tower_dtype(config.precision, self._device)
        if image_dtype is not None and not _cast_image_tower(self._model, image_dtype):
            image_dtype = None
        self._image_dtype = image_dtype
        self._tokenizer = open_clip.get_tokenizer(config.arch)
        built_spec = _frame_spec_of(self._model)
        if built_spec != self._identity.frame_spec:
            # The driver of a run derives the frame spec without the model (identity.py); a disagreement would
            # make it decode frames this model does not expect.
            raise RuntimeError(f"open_clip built {config.arch} for frames {built_spec}, but reelhash expected "
                               f"{self._identity.frame_spec}: hashing/encoders/identity.py needs updating")
        self._frame_spec = self._identity.frame_spec
        self._embed_dim = self._identity.embed_dim
        self._encoder_id = self._identity.encoder_id
        shape = (1, 3, 1, 1)
        self._pixel_mean = torch.tensor(self._frame_spec.mean, dtype=torch.float32, device=self._device).view(shape)
        self._pixel_std = torch.tensor(self._frame_spec.std, dtype=torch.float32, device=self._device).view(shape)
        self._batch_size = self._choose_batch_size()
        self._streams = cpu_stream_count(config.cpu_streams, self._device, torch.get_num_threads())
        # Each stream is a thread whose torch ops run on that one thread (torch.set_num_threads is per thread).
        self._stream_pool = ThreadPoolExecutor(
            self._streams, thread_name_prefix="encoder-stream", initializer=torch.set_num_threads, initargs=(1,),
        ) if self._streams > 1 else None

    @property
    def config(self) -> OpenClipEncoderConfig:
        return self._config

    @property
    def encoder_id(self) -> str:
        return self._encoder_id

    @property
    def embed_dim(self) -> int:
        return self._embed_dim

    @property
    def frame_spec(self) -> FrameSpec:
        return self._frame_spec

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def batch_size(self) -> int:
        """Images or texts per forward pass: the configured batch size, or on CUDA the one free memory allows."""
        return self._batch_size

    @property
    def streams(self) -> int:
        """Forward passes of images run side by side (on a CPU, one thread each); 1 = one at a time."""
        return self._streams

    @property
    def weights_are_random(self) -> bool:
        return self._weights.kind == "random"

    def describe(self) -> dict[str, Any]:
        """JSON-able identity, enough to rebuild the encoder with OpenClipEncoderConfig.from_description."""
        return self._identity.describe()

    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        check_frames(frames, self._frame_spec)
        out = np.empty((len(frames), self._embed_dim), dtype=np.float32)

        def encode(start: int, stop: int) -> None:
            out[start:stop] = self._frame_embeddings(frames[start:stop]).cpu().numpy()

        self._run_passes(len(frames), self._batch_size, encode)
        return out

    def encode_clips(self, clips: np.ndarray) -> np.ndarray:
        check_clips(clips, self._frame_spec)
        n_clips, frames_per_clip = clips.shape[:2]
        out = np.empty((n_clips, self._embed_dim), dtype=np.float32)
        size = self._frame_spec.size

        def encode(start: int, stop: int) -> None:
            batch = clips[start:stop]
            per_frame = self._frame_embeddings(batch.reshape(-1, size, size, 3))
            # CLIP4Clip mean pooling: unit-norm frames, average over the clip, normalise again.
            pooled = per_frame.view(len(batch), frames_per_clip, -1).mean(dim=1)
            out[start:stop] = F.normalize(pooled, dim=-1).cpu().numpy()

        # batch_size counts images per forward pass; whole clips go together so pooling stays on-device.
        self._run_passes(n_clips, max(1, self._batch_size // frames_per_clip), encode)
        return out

    def encode_text(self, texts: list[str]) -> np.ndarray:
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise ValueError("encode_text expects a list of strings")
        texts = list(texts)
        out = np.empty((len(texts), self._embed_dim), dtype=np.float32)
        step = self._batch_size
        with torch.inference_mode():
            for start in range(0, len(texts), step):
                tokens = self._tokenizer(texts[start : start + step]).to(self._device)
                with self._autocast():
                    embeddings = encode_text_trimmed(self._model, tokens)
                out[start : start + step] = F.normalize(embeddings.float(), dim=-1).cpu().numpy()
        return out

    def query_warnings(self, text: str) -> list[str]:
        return []  # CLIP's tokenizer reads any text

    def _run_passes(self, n_items: int, per_pass: int, encode: Callable[[int, int], None]) -> None:
        """``encode(start, stop)`` over ``[0, n_items)`` in forward passes of at most ``per_pass`` items, shared out
        between the streams so that each has one when there are fewer than a pass per stream."""
        if self._stream_pool is not None:
            per_pass = max(1, min(per_pass, math.ceil(n_items / self._streams)))
        ranges = [(start, min(start + per_pass, n_items)) for start in range(0, n_items, per_pass)]

        def run(bounds: tuple[int, int]) -> None:
            with torch.inference_mode():  # thread-local, so entered in the thread that runs the pass
                encode(*bounds)

        if self._stream_pool is None or len(ranges) < 2:
            for bounds in ranges:
                run(bounds)
        else:
            list(self._stream_pool.map(run, ranges))

    def _frame_embeddings(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [n, S, S, 3] -> unit-norm float32 [n, D] on the device."""
        # Move uint8 to the device and normalise there: 4x less host-to-device traffic than float32.
        pixels = torch.from_numpy(np.ascontiguousarray(frames)).to(self._device)
        pixels = pixels.permute(0, 3, 1, 2).float().div_(255.0).sub_(self._pixel_mean).div_(self._pixel_std)
        if self._image_dtype is not None:  # a bf16 image tower on a CPU: no autocast, bf16 in and out
            embeddings = self._model.encode_image(pixels.to(self._image_dtype))
        else:
            with self._autocast():
                embeddings = self._model.encode_image(pixels)
        return F.normalize(embeddings.float(), dim=-1)

    def _choose_batch_size(self) -> int:
        # The default batch keeps a CPU busy but leaves most of a GPU idle, and a fixed larger one would run out of
        # memory on a small or shared card, so on CUDA an unchanged default becomes what free memory holds, measured
        # in this process after the weights are loaded (in a Ray actor: on the actor's own GPU). The value, not
        # model_fields_set, says "unchanged": configs stored with models and sent to actors carry every field.
        # CPU and MPS keep the configured value exactly.
        configured = self._config.batch_size
        default = type(self._config).model_fields["batch_size"].default
        if self._device.type != "cuda" or configured != default:
            return configured
        return batch_size_for_device(self._device, self._image_bytes_on_gpu(), default=configured)

    def _image_bytes_on_gpu(self, small: int = 4, large: int = 16) -> int:
        """Device memory one more image adds to a forward pass, from the peaks of two probe batches.

        The difference of two batch sizes cancels what does not grow with the batch (autocast's fp16 copies of the
        weights, cuBLAS workspaces), which one probe would charge to every image. Texts use the same batch size:
        a CLIP caption (at most 77 tokens, through a text tower no wider than the image tower) takes about as much
        memory as an image or less, within the margin batch_size_for_device leaves.
        """
        small_peak, large_peak = (self._forward_peak_bytes(n) for n in (small, large))
        torch.cuda.empty_cache()  # the probes' cached blocks back to the driver, so mem_get_info counts them free
        grown = (large_peak - small_peak) // (large - small)
        return grown if grown > 0 else max(1, large_peak // large)

    def _forward_peak_bytes(self, images: int) -> int:
        torch.cuda.synchronize(self._device)
        before = torch.cuda.memory_allocated(self._device)
        torch.cuda.reset_peak_memory_stats(self._device)
        size = self._frame_spec.size
        with torch.inference_mode():
            self._frame_embeddings(np.zeros((images, size, size, 3), np.uint8))
        torch.cuda.synchronize(self._device)
        return torch.cuda.max_memory_allocated(self._device) - before

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self._device.type, dtype=self._autocast_dtype)


def build_encoder(config: OpenClipEncoderConfig, expected_encoder_id: str | None = None) -> OpenClipEncoder:
    """Build the encoder; with ``expected_encoder_id``, refuse one that would not match stored features."""
    encoder = OpenClipEncoder(config)
    if expected_encoder_id is not None and encoder.encoder_id != expected_encoder_id:
        raise ValueError(
            f"encoder {encoder.encoder_id!r} does not match the expected {expected_encoder_id!r}: "
            "its embeddings would not be comparable with the stored features (different arch, weights or seed)"
        )
    return encoder


def _register() -> None:
    from hashing.encoders.registry import register_encoder_kind

    register_encoder_kind("open_clip", OpenClipEncoderConfig, OpenClipEncoder)


_register()
