"""Vision-encoder backends behind one interface: torch, torch-compile, onnxruntime, tensorrt.

Each backend turns preprocessed frames into the LLM-space embeddings of their image tokens. The runtime
tries the backends named in ModelConfig.vision_backends in order and keeps the first that can run here;
one that cannot (package missing, no GPU, no exported graph) raises BackendUnavailableError with the
reason, which is logged before falling back to the next.
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

from spatial_mllm_ros.model.encoder import VisionTower, engine_path, onnx_paths, vision_fingerprint
from spatial_mllm_ros.model.errors import BackendUnavailableError
from spatial_mllm_ros.model.export import export_onnx
from spatial_mllm_ros.model.preprocess import PreparedImage

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
    """The exported ONNX graph (spatial-mllm export-vision) in onnxruntime; CUDA provider when present."""

    name = "onnxruntime"

    def __init__(self, model: Any, family: str, checkpoint: Path | None) -> None:
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
        if not graph.is_file():
            raise BackendUnavailableError(
                self.name,
                f"no exported graph at {graph}; run: spatial-mllm export-vision --checkpoint "
                f"{checkpoint} --format onnx",
            )
        info = json.loads(meta.read_text()) if meta.is_file() else {}
        if info.get("fingerprint") != vision_fingerprint(model):
            raise BackendUnavailableError(self.name, f"{graph} was exported from other weights; export again")
        providers = [
            p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()
        ]
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(graph), opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.model = model

    def encode(self, images: Sequence[PreparedImage]) -> list[FrameFeatures]:
        """Run the ONNX graph on all frames' tiles at once (float32 in, float32 out)."""
        if not images:
            return []
        pixels = torch.cat([i.pixel_values for i in images]).float().cpu().numpy()
        (out,) = self.session.run(None, {self.input_name: np.ascontiguousarray(pixels)})
        flat = torch.from_numpy(out).to(self.model.device, self.model.dtype)
        return _split_tiles(flat, images)

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
    if name == "onnxruntime":
        return OnnxRuntimeBackend(model, family, checkpoint)
    if name == "tensorrt":
        return TensorRTBackend(model, family, checkpoint, max_tiles)
    raise BackendUnavailableError(name, "unknown backend")


def select_backend(
    names: Sequence[str], model: Any, family: str, checkpoint: Path | None, max_tiles: int = 64
) -> tuple[VisionBackend, dict[str, str]]:
    """Return the first backend of `names` that runs here (torch always does), and why the others did not."""
    skipped: dict[str, str] = {}
    for name in [*names, "torch"]:
        try:
            backend = make_backend(name, model, family, checkpoint, max_tiles)
        except BackendUnavailableError as exc:
            skipped[name] = exc.reason
            log.info("vision backend %s skipped: %s", name, exc.reason)
            continue
        return backend, skipped
    raise BackendUnavailableError("torch", "no backend could be constructed")  # unreachable: torch runs
