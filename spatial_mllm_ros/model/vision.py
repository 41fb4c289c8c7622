"""Vision-encoder backends behind one interface: torch, torch-compile, onnxruntime(-int8), tensorrt.

Each backend turns preprocessed frames into the LLM-space embeddings of their image tokens. The runtime
tries the backends named in ModelConfig.vision_backends in order and keeps the first that can run here;
one that cannot (package missing, no GPU, no exported graph) raises BackendUnavailableError with the
reason, which is logged before falling back to the next. An onnxruntime backend must also have been timed
faster than torch eager on this machine (speed.py; ModelConfig.measure_backends).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spatial_mllm_ros.model.encoder import (
    VisionTower,
    engine_path,
    onnx_paths,
    ort_path,
    vision_fingerprint,
)
from spatial_mllm_ros.model.errors import BackendUnavailableError
from spatial_mllm_ros.model.export import convert_fp16, export_onnx, quantize_int8, tile_size
from spatial_mllm_ros.model.preprocess import PreparedImage
from spatial_mllm_ros.model.speed import TILES, SpeedCheck, check_speed, machine_key, time_pair

log = logging.getLogger(__name__)


@dataclass
class FrameFeatures:
    """LLM-space embeddings of one frame's image tokens (what the embedding cache stores)."""

    embeds: torch.Tensor  # (n_tokens, hidden)
    grid_thw: tuple[int, int, int] | None = None  # Qwen families
    deepstack: list[torch.Tensor] | None = None  # Qwen3-VL: per deepstack layer (n_tokens, hidden)

    @property
    def nbytes(self) -> int:
        """Memory held, for the byte-bounded cache."""
        extra = sum(t.numel() * t.element_size() for t in self.deepstack or [])
        return self.embeds.numel() * self.embeds.element_size() + extra


class VisionBackend:
    """Interface: encode preprocessed frames to FrameFeatures, several frames in one call."""

    name = "base"

    def encode(self, images: Sequence[PreparedImage]) -> list[FrameFeatures]:
        """Encode frames (any number) to their image-token embeddings."""
        raise NotImplementedError

    def close(self) -> None:
        """Release backend resources (sessions, engines)."""


def _split_tiles(flat: torch.Tensor, images: Sequence[PreparedImage]) -> list[FrameFeatures]:
    out, start = [], 0
    for img in images:
        chunk = flat[start : start + img.n_tiles]
        out.append(FrameFeatures(chunk.reshape(-1, chunk.shape[-1])))
        start += img.n_tiles
    return out


class TorchBackend(VisionBackend):
    """The model's own PyTorch vision tower (every family), optionally torch.compile'd."""

    def __init__(self, model: Any, family: str, compile: bool = False) -> None:
        self.model, self.family = model, family
        self.name = "torch-compile" if compile else "torch"
        self.tower = VisionTower(model) if family == "internvl" else None
        self.eager = self.tower
        if compile:
            if family != "internvl":
                raise BackendUnavailableError(self.name, "torch.compile is wired for the InternVL tower only")
            # static shapes: one graph per tile count (few); dynamic tracing trips on the pixel shuffle
            self.tower = torch.compile(self.tower, dynamic=False)

    def _run_tower(self, pixels: torch.Tensor) -> torch.Tensor:
        try:
            return self.tower(pixels)
        except Exception as exc:  # a compiler failure must not take the robot's answers down
            if self.tower is self.eager:
                raise
            log.warning(
                "torch.compile failed (%s: %s); vision runs eagerly from now on", type(exc).__name__, exc
            )
            self.tower, self.name = self.eager, "torch"
            return self.tower(pixels)

    @torch.inference_mode()
    def encode(self, images: Sequence[PreparedImage]) -> list[FrameFeatures]:
        """Run the vision tower on all frames' tiles (InternVL) or patch grids (Qwen) at once."""
        if not images:
            return []
        dtype = self.model.dtype
        if self.tower is not None:
            pixels = torch.cat([i.pixel_values for i in images]).to(self.model.device, dtype)
            return _split_tiles(self._run_tower(pixels), images)
        inner = self.model.model
        pixels = torch.cat([i.pixel_values for i in images]).to(self.model.device, dtype)
        grid = torch.tensor([i.grid_thw for i in images], device=self.model.device)
        out = inner.get_image_features(pixel_values=pixels, image_grid_thw=grid, return_dict=True)
        deep = getattr(out, "deepstack_features", None)
        result = []
        for k, img in enumerate(images):
            layers = None
            if deep:
                layers = [d[k] for d in deep] if isinstance(deep[0], (tuple, list)) else None
            result.append(FrameFeatures(out.pooler_output[k], img.grid_thw, layers))
        return result


class OnnxRuntimeBackend(VisionBackend):
    """The exported graph (spatial-mllm export-vision) in onnxruntime, outputs written into torch tensors.

    CPU: the fused float32 graph, or its int8 dynamic quantisation (`int8`), with torch's intra-op thread
    count (the node sets it from its cpu_threads). CUDA, when the model is on a GPU and onnxruntime has the
    CUDA provider: the fp16 graph, inputs and outputs bound to torch's GPU tensors; written the standard
    way, not run on the development machines (no CUDA provider there).
    """

    name = "onnxruntime"

    def __init__(self, model: Any, family: str, checkpoint: Path | None, int8: bool = False) -> None:
        self.name = "onnxruntime-int8" if int8 else "onnxruntime"
        if family != "internvl":
            raise BackendUnavailableError(
                self.name, f"only InternVL vision towers are exported, not {family}"
            )
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailableError(self.name, f"onnxruntime not installed ({exc})") from exc
        if checkpoint is None:
            raise BackendUnavailableError(self.name, "model has no checkpoint directory to find the graph in")
        graph, meta = onnx_paths(checkpoint)
        fused = ort_path(checkpoint)
        if not fused.is_file():
            raise BackendUnavailableError(
                self.name,
                f"no exported graph at {fused}; run: spatial-mllm export-vision --checkpoint "
                f"{checkpoint} --format onnx",
            )
        info = json.loads(meta.read_text()) if meta.is_file() else {}
        if info.get("fingerprint") != vision_fingerprint(model):
            raise BackendUnavailableError(self.name, f"{graph} was exported from other weights; export again")
        cuda = model.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers()
        if int8 and cuda:
            raise BackendUnavailableError(self.name, "int8 dynamic quantisation runs on the CPU only")
        form = "fp16" if cuda else "int8" if int8 else ""
        path = ort_path(checkpoint, form)
        if form and not path.is_file():
            (convert_fp16 if cuda else quantize_int8)(fused, path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.inter_op_num_threads = 1
        # Idle worker threads would spin between calls on cores the node shares with its image callbacks.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers: list[Any] = ["CPUExecutionProvider"]
        if cuda:
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": model.device.index or 0}))
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.device = model.device if cuda else torch.device("cpu")
        self.input_name = self.session.get_inputs()[0].name
        output = self.session.get_outputs()[0]
        self.output_name, self.out_shape = output.name, tuple(output.shape[1:])
        if not all(isinstance(d, int) for d in self.out_shape):
            raise BackendUnavailableError(self.name, f"{path} has no static (tokens, hidden) output")
        self.model = model
        self.meta = meta

    def encode(self, images: Sequence[PreparedImage]) -> list[FrameFeatures]:
        """Run the graph on all frames' tiles at once, into a torch tensor allocated here (IO binding)."""
        if not images:
            return []
        pixels = torch.cat([i.pixel_values for i in images]).to(self.device, torch.float32).contiguous()
        out = torch.empty((pixels.shape[0], *self.out_shape), device=self.device, dtype=torch.float32)
        binding = self.session.io_binding()
        where = (self.device.type, self.device.index or 0, np.float32)
        binding.bind_input(self.input_name, *where, tuple(pixels.shape), pixels.data_ptr())
        binding.bind_output(self.output_name, *where, tuple(out.shape), out.data_ptr())
        if self.device.type == "cuda":  # torch's stream must have written the pixels before onnxruntime reads
            torch.cuda.current_stream(self.device).synchronize()
        self.session.run_with_iobinding(binding)
        return _split_tiles(out.to(self.model.device, self.model.dtype), images)

    def close(self) -> None:
        """Drop the session."""
        self.session = None


class TensorRTBackend(VisionBackend):
    """An fp16 TensorRT engine built from the ONNX graph, cached next to the checkpoint per TRT+GPU.

    Written the standard TensorRT 10 way (OnnxParser -> builder config with FP16 and an optimisation
    profile over the number of tiles -> serialized engine; execute_async_v3 with torch-owned buffers).
    Not runnable on the development machines (no TensorRT, no GPU): there it raises
    BackendUnavailableError and the runtime falls back.
    """

    name = "tensorrt"

    def __init__(self, model: Any, family: str, checkpoint: Path | None, max_tiles: int = 64) -> None:
        if family != "internvl":
            raise BackendUnavailableError(
                self.name, f"only InternVL vision towers are exported, not {family}"
            )
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise BackendUnavailableError(
                self.name,
                "tensorrt is not installed (JetPack ships it; on x86 install NVIDIA's tensorrt "
                f"wheels) ({exc})",
            ) from exc
        if not torch.cuda.is_available() or model.device.type != "cuda":
            raise BackendUnavailableError(self.name, "needs the model on a CUDA device")
        if checkpoint is None:
            raise BackendUnavailableError(
                self.name, "model has no checkpoint directory to cache the engine in"
            )
        self.trt, self.model = trt, model
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.path = engine_path(checkpoint, trt.__version__, torch.cuda.get_device_name(model.device))
        graph, _ = onnx_paths(checkpoint)
        if not self.path.is_file():
            if not graph.is_file():
                export_onnx(model, checkpoint)
            self.build(graph, self.path, max_tiles)
        runtime = trt.Runtime(self.logger)
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:  # stale or foreign engine: rebuild once
            log.warning("TensorRT engine %s could not be loaded; rebuilding", self.path)
            self.build(graph, self.path, max_tiles)
            self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        self.context = self.engine.create_execution_context()
        self.input_name, self.output_name = (self.engine.get_tensor_name(i) for i in range(2))

    def build(self, graph: Path, out: Path, max_tiles: int) -> None:
        """Build and serialise an fp16 engine with a dynamic number of tiles."""
        trt = self.trt
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(graph)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendUnavailableError(self.name, f"ONNX parse failed: {errors}")
        config = builder.create_builder_config()
        config.set_flag(trt.BuilderFlag.FP16)
        shape = tuple(network.get_input(0).shape)[1:]
        profile = builder.create_optimization_profile()
        profile.set_shape(network.get_input(0).name, (1, *shape), (7, *shape), (max_tiles, *shape))
        config.add_optimization_profile(profile)
        engine = builder.build_serialized_network(network, config)
        if engine is None:
            raise BackendUnavailableError(self.name, "engine build failed (see TensorRT log)")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(bytes(engine))

    @torch.inference_mode()
    def encode(self, images: Sequence[PreparedImage]) -> list[FrameFeatures]:
        """Run the engine on all frames' tiles at once."""
        if not images:
            return []
        pixels = torch.cat([i.pixel_values for i in images]).to("cuda", torch.float32).contiguous()
        self.context.set_input_shape(self.input_name, tuple(pixels.shape))
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        out = torch.empty(out_shape, device="cuda", dtype=torch.float32)
        self.context.set_tensor_address(self.input_name, pixels.data_ptr())
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        stream = torch.cuda.current_stream()
        self.context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return _split_tiles(out.to(self.model.dtype), images)

    def close(self) -> None:
        """Free the engine and its context."""
        self.context = None
        self.engine = None


def make_backend(
    name: str, model: Any, family: str, checkpoint: Path | None, max_tiles: int
) -> VisionBackend:
    """Construct one backend by name (raises BackendUnavailableError when it cannot run here)."""
    if name == "torch":
        return TorchBackend(model, family)
    if name == "torch-compile":
        return TorchBackend(model, family, compile=True)
    if name in ("onnxruntime", "onnxruntime-int8"):
        return OnnxRuntimeBackend(model, family, checkpoint, int8=name.endswith("int8"))
    if name == "tensorrt":
        return TensorRTBackend(model, family, checkpoint, max_tiles)
    raise BackendUnavailableError(name, "unknown backend")


def speed_check(backend: OnnxRuntimeBackend, family: str) -> SpeedCheck:
    """Time the backend against torch eager on the same random tiles, or read that timing (speed.py)."""
    model = backend.model

    def measure() -> tuple[float, float]:  # only when no timing is saved for this machine
        size = tile_size(model)
        tiles = [PreparedImage(torch.randn(TILES, 3, size, size), TILES * backend.out_shape[0], (TILES, 1))]
        reference = TorchBackend(model, family)
        with torch.inference_mode():
            return time_pair(lambda: backend.encode(tiles), lambda: reference.encode(tiles), model.device)

    return check_speed(backend.meta, backend.name, machine_key(model.device, model.dtype), measure)


def select_backend(
    names: Sequence[str],
    model: Any,
    family: str,
    checkpoint: Path | None,
    max_tiles: int = 64,
    measure: bool = True,
) -> tuple[VisionBackend, dict[str, str]]:
    """Return the first backend of `names` that runs here (torch always does), and why the others did not.

    With `measure`, an onnxruntime backend is taken only where it was timed faster than torch eager.
    """
    skipped: dict[str, str] = {}
    for name in [*names, "torch"]:
        try:
            backend = make_backend(name, model, family, checkpoint, max_tiles)
        except BackendUnavailableError as exc:
            skipped[name] = exc.reason
            log.info("vision backend %s skipped: %s", name, exc.reason)
            continue
        if measure and isinstance(backend, OnnxRuntimeBackend):
            check = speed_check(backend, family)
            if not check.faster:
                backend.close()
                skipped[name] = f"measured slower than torch eager: {check.describe(name)}"
                log.info("vision backend %s skipped: %s", name, skipped[name])
                continue
            log.info("vision backend %s measured faster than torch eager: %s", name, check.describe(name))
        return backend, skipped
    raise BackendUnavailableError("torch", "no backend could be constructed")  # unreachable: torch runs
