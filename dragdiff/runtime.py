"""Runtime: the one loaded model that every editing method works on, and the state that goes with it.

The UNet's LoRA adapter, its attention processors and its memory layout are state of one shared model, so
they live here, beside the lock that keeps two edits (a server with --gpu-jobs 2, two methods) from mixing
each other's. Methods (dragdiff.methods) are peers over a Runtime: none of them owns the model.
"""

from __future__ import annotations

import gc
import threading
import traceback
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch
from diffusers.models.resnet import ResnetBlock2D

from .cache import TensorCache
from .errors import DragError
from .lora import attach_lora, detach_lora
from .models import DiffusionModel, load_model

PARTIAL_LORA = "<partially trained>"  # what the UNet carries while (or after stopping) LoRA training


def out_of_memory(exc: BaseException) -> bool:
    """CUDA's out-of-memory error, Python's MemoryError, or the CPU allocator's RuntimeError."""
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "can't allocate memory" in str(exc)


class Runtime:
    """A loaded model (device, dtype), its cache folder, its attached adapter and speed settings, one lock.

    counts: how often each expensive stage ran or came from the cache (tests count work, not time).
    lock: re-entrant; every method holds it for the whole of an edit.
    """

    def __init__(
        self,
        model: DiffusionModel | str = "auto",
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        cache_dir: str | None = None,
    ):
        self.model = model if isinstance(model, DiffusionModel) else load_model(model, device, dtype)
        self.cache = TensorCache(cache_dir)
        self.counts: Counter[str] = Counter()
        self.lock = threading.RLock()
        self._attached_lora: str | None = None
        self._methods: dict[str, Any] = {}
        self._components: dict[Any, Any] = {}

    @classmethod
    def of(cls, source: Runtime | DiffusionModel | str, cache_dir: str | None = None) -> Runtime:
        """`source` itself when it is a Runtime, else a new Runtime on that model (or model spec)."""
        if isinstance(source, Runtime):
            return source
        if not isinstance(source, (DiffusionModel, str)):
            raise TypeError(f"expected a Runtime, a DiffusionModel or a model spec, got {type(source).__name__}")
        return cls(source, cache_dir=cache_dir)

    def method(self, name: str):
        """The method `name` of the registry on this runtime (one instance per runtime and name)."""
        from .methods import method_class

        if name not in self._methods:
            self._methods[name] = method_class(name)(self)
        return self._methods[name]

    def edit(self, request, method: str | None = None, on_progress=None, should_stop=None):
        """`request` edited by the named method (None: this model's default, dragdiff.methods.default_method):
        Runtime("demo").edit(DragRequest(...)) is the shortest call."""
        from .methods import default_method

        return self.method(method or default_method(self.model.spec)).edit(request, on_progress, should_stop)

    @contextmanager
    def editing(self):
        """Hold the lock for one edit. Running out of memory ends the edit with what to change, not a crash,
        and what it took is freed before the next."""

        def advice() -> str:
            precision = " or load the model in fp16 (--dtype fp16)" if self.model.dtype == torch.float32 else ""
            return (
                f"the edit ran out of {self._memory()}; nothing was changed. Lower resolution, set work_area to "
                f"region, turn gradient_checkpointing on (DragDiffusion, GoodDrag){precision}"
            )

        with self.lock, self._out_of_memory_says(advice):
            yield

    def component(self, key: tuple[str, str], load, *args: Any):
        """A part loaded beside the model (an inpainting model, a tiny autoencoder): `load(spec, *args)` the
        first time `key` = (setting, spec) is asked for, the same object after. One that does not fit is named:
        a smaller edit would not help."""
        if key not in self._components:
            setting, spec = key

            def too_big() -> str:
                return (
                    f"{setting} {spec!r} does not fit in {self._memory()} beside the model; nothing was changed. "
                    f"Set {setting} to null, or give a smaller one"
                )

            with self._out_of_memory_says(too_big):
                self._components[key] = load(spec, *args)
        return self._components[key]

    @contextmanager
    def _out_of_memory_says(self, message: Callable[[], str]):
        """Running out of memory inside ends with DragError(message()), once what the failed work held is
        freed: its frames are cleared first, since the error's traceback keeps their tensors alive."""
        try:
            yield
        except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError is a RuntimeError
            if not out_of_memory(exc):
                raise
            traceback.clear_frames(exc.__traceback__)
            gc.collect()
            if self.model.device.type == "cuda":
                torch.cuda.empty_cache()
            raise DragError(message()) from None

    def _memory(self) -> str:
        device = self.model.device
        if device.type == "cuda":
            return f"the GPU's memory ({torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB)"
        return "the CPU's memory"

    # -- the adapter -----------------------------------------------------------------------------------------

    def use_lora(self, key: str | None, weights: dict[str, torch.Tensor] | None = None) -> None:
        """Make the UNet carry these LoRA weights (or none: `weights` None) without reloading when it already
        does. Training-free methods call use_lora(None): they run on the plain UNet."""
        if self._attached_lora == key:
            return
        if weights is None:
            detach_lora(self.model.unet)
        else:
            rank = next(v for k, v in weights.items() if "lora_A" in k).shape[0]
            attach_lora(self.model.unet, rank, {k: v.to(self.model.device) for k, v in weights.items()})
        self._attached_lora = key

    def lora_replaced(self, key: str | None) -> None:
        """Record that training replaced the adapter: `key` once it finished, None while (or if stopped) it
        holds a partial one, which no later use_lora call may mistake for the plain UNet."""
        self._attached_lora = key if key is not None else PARTIAL_LORA

    # -- checks and speed settings ---------------------------------------------------------------------------

    def check_blocks(self, name: str, indices: tuple[int, ...] | None) -> None:
        """Decoder block indices of a config field must exist in this model's UNet."""
        count = len(self.model.unet.up_blocks)
        bad = [i for i in indices or () if i >= count]
        if bad:
            raise DragError(f"{name}: this model's UNet has up_blocks 0-{count - 1}, not {bad}")

    def apply_speed_settings(self, channels_last: bool, compiled: bool, vae_tiling: bool) -> None:
        """Memory layout, compiled convolutions and VAE tiling as asked (unchanged results up to rounding)."""
        unet, vae = self.model.unet, self.model.vae
        unet.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        compile_convolutions(unet, compiled)
        if vae_tiling:
            vae.enable_tiling()
        else:
            vae.disable_tiling()


def compile_convolutions(unet, enabled: bool) -> None:
    """torch.compile every ResNet block of the UNet (where a CPU spends ~60% of a step: convolutions, with
    their group norms and activations fused around them), or undo it. Only these blocks: compiling the
    whole UNet would recompile whenever attention processors or LoRA adapters change."""
    for module in unet.modules():
        if isinstance(module, ResnetBlock2D):
            compiled = "forward" in module.__dict__  # the compiled forward shadows the class's
            if enabled and not compiled:
                module.forward = torch.compile(module.forward)
            elif compiled and not enabled:
                del module.forward


@contextmanager
def gradient_checkpointing(unet, enabled: bool):
    """Recompute the UNet's block activations in the backward instead of keeping them (less memory)."""
    if not enabled:
        yield
        return
    unet.enable_gradient_checkpointing()
    try:
        yield
    finally:
        unet.disable_gradient_checkpointing()
