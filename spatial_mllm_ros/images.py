"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge and without importing ROS.

Works by duck typing on rclpy messages and rosbags-deserialised messages alike (`data` may be
array.array, bytes, a list or a numpy array). Raw images are read through a zero-copy strided view
of `data` (rows of `step` bytes, sliced to `width`) and copied once into RGB uint8 HxWx3.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from spatial_mllm_ros.errors import (
    BadShapeError,
    CorruptImageError,
    DataTooShortError,
    ImageEncodeError,
    ImageTooLargeError,
    StepTooSmallError,
    UnknownEncodingError,
)

DEFAULT_MAX_PIXELS = 1 << 26  # 67 Mpx (8192 x 8192): anything larger from the network is refused
MM_PER_M = 1000.0

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_COMPRESSED_DEPTH_HEADER = 12  # compressed_depth_image_transport ConfigHeader: int32 format, float32[2]


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """Pixels for the model (RGB uint8 HxWx3) and, for depth encodings, depth in metres (NaN = invalid)."""

    rgb: np.ndarray
    depth: np.ndarray | None = None


@dataclass(frozen=True)
class _Encoding:
    """How one ROS encoding is laid out and turned into RGB (and depth)."""

    little: np.dtype  # one channel, little-endian (is_bigendian = 0)
    big: np.dtype  # one channel, big-endian
    channels: int  # channels per pixel as stored (2 for packed YUV 4:2:2)
    convert: Callable[[np.ndarray], DecodedImage]

    @property
    def pixel_bytes(self) -> int:
        """Bytes per pixel as stored."""
        return self.channels * self.little.itemsize


def _enc(dtype: str, channels: int, convert: Callable[[np.ndarray], DecodedImage]) -> _Encoding:
    return _Encoding(np.dtype("<" + dtype), np.dtype(">" + dtype), channels, convert)


def _copy_rgb(view: np.ndarray) -> DecodedImage:
    return DecodedImage(view.copy())  # the one copy: C-contiguous, owned, writable


def _cvt(code: int) -> Callable[[np.ndarray], DecodedImage]:
    return lambda view: DecodedImage(cv2.cvtColor(view, code))


def _gray16(view: np.ndarray) -> DecodedImage:
    return DecodedImage(cv2.cvtColor((view >> 8).astype(np.uint8), cv2.COLOR_GRAY2RGB))


def _depth_mm(view: np.ndarray) -> DecodedImage:
    depth = view.astype(np.float32) / np.float32(MM_PER_M)  # division: the nearest float32 to mm/1000
    depth[view == 0] = np.nan  # REP 118: 0 mm means no reading
    return DecodedImage(depth_to_rgb(depth), depth)


def _depth_m(view: np.ndarray) -> DecodedImage:
    depth = view.astype(np.float32)  # also swaps big-endian data to native order
    return DecodedImage(depth_to_rgb(depth), depth)


# Keys are lower case; lookup is case-insensitive. 8UC3/8UC4 carry no colour order: OpenCV's BGR(A).
ENCODINGS: dict[str, _Encoding] = {
    "rgb8": _enc("u1", 3, _copy_rgb),
    "bgr8": _enc("u1", 3, _cvt(cv2.COLOR_BGR2RGB)),
    "8uc3": _enc("u1", 3, _cvt(cv2.COLOR_BGR2RGB)),
    "rgba8": _enc("u1", 4, _cvt(cv2.COLOR_RGBA2RGB)),
    "bgra8": _enc("u1", 4, _cvt(cv2.COLOR_BGRA2RGB)),
    "8uc4": _enc("u1", 4, _cvt(cv2.COLOR_BGRA2RGB)),
    "mono8": _enc("u1", 1, _cvt(cv2.COLOR_GRAY2RGB)),
    "8uc1": _enc("u1", 1, _cvt(cv2.COLOR_GRAY2RGB)),
    "mono16": _enc("u2", 1, _gray16),
    "16uc1": _enc("u2", 1, _depth_mm),
    "32fc1": _enc("f4", 1, _depth_m),
    "yuv422": _enc("u1", 2, _cvt(cv2.COLOR_YUV2RGB_UYVY)),  # ROS yuv422 is UYVY byte order
    "uyvy": _enc("u1", 2, _cvt(cv2.COLOR_YUV2RGB_UYVY)),
    "yuv422_yuy2": _enc("u1", 2, _cvt(cv2.COLOR_YUV2RGB_YUY2)),
    "yuyv": _enc("u1", 2, _cvt(cv2.COLOR_YUV2RGB_YUY2)),
}


def depth_to_rgb(depth: np.ndarray) -> np.ndarray:
    """Visualise depth (metres, NaN/<=0 invalid) as grey RGB for viewing: near is bright, invalid black."""
    valid = np.isfinite(depth) & (depth > 0)
    gray = np.zeros(depth.shape, np.uint8)
    if valid.any():
        values = depth[valid]
        lo, hi = float(values.min()), float(values.max())
        scale = 254.0 / (hi - lo) if hi > lo else 0.0
        gray[valid] = (255.0 - (values - lo) * scale).astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)


def byte_view(data: Any) -> np.ndarray:
    """View `data` of any message flavour as a 1-D uint8 array, zero-copy whenever it exposes a buffer."""
    if isinstance(data, np.ndarray):
        flat = data.reshape(-1)
        return flat if flat.dtype == np.uint8 else np.ascontiguousarray(flat).view(np.uint8)
    if isinstance(data, (list, tuple)):
        try:
            return np.array(data, dtype=np.uint8)
        except (OverflowError, ValueError, TypeError) as exc:
            raise CorruptImageError(f"data is a list that is not bytes 0..255: {exc}") from exc
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError as exc:
        raise CorruptImageError(f"data of type {type(data).__name__} is not a byte buffer") from exc


def _check_size(width: int, height: int, max_pixels: int, kind: str) -> None:
    if width <= 0 or height <= 0:
        raise BadShapeError(f"{kind} image is {width}x{height}: width and height must be > 0")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{kind} image is {width}x{height} = {width * height} px > limit {max_pixels} px"
        )


def image_to_numpy(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """sensor_msgs/Image -> RGB uint8 HxWx3 (+ float32 depth in metres for 16UC1 and 32FC1)."""
    encoding = msg.encoding
    spec = ENCODINGS.get(encoding) or ENCODINGS.get(str(encoding).strip().lower())
    if spec is None:
        raise UnknownEncodingError(f"encoding {encoding!r}; supported: {', '.join(sorted(ENCODINGS))}")
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    _check_size(width, height, max_pixels, encoding)
    if spec.channels == 2 and width % 2:
        raise BadShapeError(f"{encoding} packs pixel pairs: width {width} must be even")
    dtype = spec.big if msg.is_bigendian else spec.little
    row_bytes = width * spec.pixel_bytes
    if step < row_bytes:
        raise StepTooSmallError(
            f"step {step} < width {width} * {spec.pixel_bytes} bytes per pixel = {row_bytes}"
        )
    buf = byte_view(msg.data)
    if buf.size < step * height:
        raise DataTooShortError(
            f"data has {buf.size} bytes < step {step} * height {height} = {step * height}"
        )
    # One zero-copy view: rows `step` bytes apart, each sliced to `width` pixels by the shape.
    if spec.channels == 1:
        shape, strides = (height, width), (step, dtype.itemsize)
    else:
        shape, strides = (height, width, spec.channels), (step, spec.pixel_bytes, dtype.itemsize)
    return spec.convert(np.ndarray(shape, dtype, buffer=buf, strides=strides))


def _jpeg_size(buf: bytes) -> tuple[int, int] | None:
    """(width, height) from the first SOF segment; None when the marker stream is broken."""
    pos = 2
    while pos + 4 <= len(buf):
        if buf[pos] != 0xFF:
            return None
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers carry no length
            pos += 2
            continue
        length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(buf):
                return None
            height = int.from_bytes(buf[pos + 5 : pos + 7], "big")
            return int.from_bytes(buf[pos + 7 : pos + 9], "big"), height
        pos += 2 + length
    return None


def _png_size(buf: bytes) -> tuple[int, int] | None:
    if len(buf) < 24 or buf[12:16] != b"IHDR":
        return None
    return int.from_bytes(buf[16:20], "big"), int.from_bytes(buf[20:24], "big")


def _decode_file(buf: np.ndarray, fmt: str, max_pixels: int) -> tuple[str, np.ndarray]:
    """Decode a JPEG (straight to RGB) or PNG (as stored) after checking its header size against the limit."""
    head = buf[:65536].tobytes()  # JPEG headers (EXIF, ICC) sit well within this
    if head.startswith(_JPEG_MAGIC):
        kind, size = "JPEG", _jpeg_size(head)
        if b"\xff\xd9" not in buf[-32:].tobytes():
            raise CorruptImageError(f"JPEG of {buf.size} bytes has no end-of-image marker (truncated)")
    elif head.startswith(_PNG_MAGIC):
        kind, size = "PNG", _png_size(head)
    elif any(name in fmt for name in ("jpeg", "jpg", "png")) or not fmt:
        raise CorruptImageError(f"payload of {buf.size} bytes has no JPEG/PNG signature (format {fmt!r})")
    else:
        raise UnknownEncodingError(f"compressed format {fmt!r}; supported: jpeg, png, compressedDepth png")
    if size is None:
        raise CorruptImageError(f"{kind} header is broken: no image size found")
    _check_size(size[0], size[1], max_pixels, kind)
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB if kind == "JPEG" else cv2.IMREAD_UNCHANGED)
    if image is None:
        raise CorruptImageError(f"{kind} data of {buf.size} bytes could not be decoded")
    return kind, image


def _decoded_to_rgb(image: np.ndarray, is_depth_mm: bool) -> DecodedImage:
    """OpenCV's decoded PNG (gray/BGR/BGRA, 8 or 16 bit) -> DecodedImage."""
    if image.ndim == 2:
        if image.dtype == np.uint16:
            return _depth_mm(image) if is_depth_mm else _gray16(image)
        return DecodedImage(cv2.cvtColor(image, cv2.COLOR_GRAY2RGB))
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return DecodedImage(cv2.cvtColor(image, code))


def _compressed_depth(buf: np.ndarray, encoding: str, fmt: str, max_pixels: int) -> DecodedImage:
    """compressed_depth_image_transport payload: 12-byte header, then a 16-bit PNG."""
    if buf.size <= _COMPRESSED_DEPTH_HEADER:
        raise CorruptImageError(f"compressedDepth payload of {buf.size} bytes has no room for header + PNG")
    quant_a, quant_b = (float(x) for x in buf[4:12].view("<f4"))
    payload = buf[_COMPRESSED_DEPTH_HEADER:]
    if "rvl" in fmt:
        raise UnknownEncodingError(f"compressed format {fmt!r}: only compressedDepth png is supported")
    kind, image = _decode_file(payload, "png", max_pixels)
    if kind != "PNG" or image.ndim != 2 or image.dtype != np.uint16:
        raise CorruptImageError(
            f"compressedDepth PNG is {image.dtype} {image.shape}, expected 16-bit single channel"
        )
    if encoding == "16uc1":
        return _depth_mm(image)
    if encoding == "32fc1":
        inv = image.astype(np.float32)
        with np.errstate(divide="ignore"):
            depth = np.float32(quant_a) / (inv - np.float32(quant_b))
        depth[image == 0] = np.nan
        return DecodedImage(depth_to_rgb(depth), depth)
    raise UnknownEncodingError(f"compressedDepth of encoding {encoding!r}; supported: 16UC1, 32FC1")


def compressed_to_numpy(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """sensor_msgs/CompressedImage (jpeg, png, "compressedDepth") -> the same outputs as image_to_numpy."""
    fmt = str(msg.format).strip().lower()
    encoding = fmt.split(";", 1)[0].strip() if ";" in fmt else ""
    buf = byte_view(msg.data)
    if "compresseddepth" in fmt:
        return _compressed_depth(buf, encoding, fmt, max_pixels)
    kind, image = _decode_file(buf, fmt, max_pixels)
    if kind == "JPEG":
        return DecodedImage(image)
    return _decoded_to_rgb(image, is_depth_mm=encoding == "16uc1")


def is_compressed(msg: Any) -> bool:
    """Tell CompressedImage-shaped messages (a `format` field and no `encoding`) from Image ones."""
    return not hasattr(msg, "encoding") and hasattr(msg, "format")  # Image first: the common, cheap case


def decode(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Image or CompressedImage, whichever `msg` is."""
    if is_compressed(msg):
        return compressed_to_numpy(msg, max_pixels)
    return image_to_numpy(msg, max_pixels)


# Encodings numpy_to_image_fields writes: (channels in the message, numpy dtype, from-RGB conversion).
_OUTPUT: dict[str, tuple[int, str, int | None]] = {
    "rgb8": (3, "u1", None),
    "bgr8": (3, "u1", cv2.COLOR_RGB2BGR),
    "rgba8": (4, "u1", cv2.COLOR_RGB2RGBA),
    "bgra8": (4, "u1", cv2.COLOR_RGB2BGRA),
    "mono8": (1, "u1", None),
    "8uc1": (1, "u1", None),
    "mono16": (1, "u2", None),
    "16uc1": (1, "u2", None),
    "32fc1": (1, "f4", None),
}


def numpy_to_image_fields(pixels: np.ndarray, encoding: str = "rgb8") -> dict[str, Any]:
    """Array -> sensor_msgs/Image fields (height, width, encoding, is_bigendian, step, data as bytes).

    Colour encodings take RGB uint8 HxWx3; mono8/mono16/16UC1/32FC1 take a 2-D array of that type.
    `data` is bytes (fast for rclpy); rosbags messages want `np.frombuffer(data, np.uint8)`.
    """
    key = encoding.strip().lower()
    if key not in _OUTPUT:
        raise ImageEncodeError(f"cannot publish encoding {encoding!r}; supported: {', '.join(_OUTPUT)}")
    channels, dtype, code = _OUTPUT[key]
    array = np.asarray(pixels)
    expected = "HxW" if channels == 1 else "HxWx3 RGB"
    if code is not None or channels == 3:
        ok_shape = array.ndim == 3 and array.shape[2] == 3
    else:
        ok_shape = array.ndim == 2
    if not ok_shape or array.dtype != np.dtype(dtype) or 0 in array.shape:
        raise ImageEncodeError(
            f"{encoding} needs a non-empty {expected} {np.dtype(dtype).name} array, "
            f"got {array.dtype} {array.shape}"
        )
    out = cv2.cvtColor(array, code) if code is not None else np.ascontiguousarray(array)
    height, width = out.shape[:2]
    return {
        "height": height,
        "width": width,
        "encoding": encoding,
        "is_bigendian": int(sys.byteorder == "big"),
        "step": width * channels * out.dtype.itemsize,
        "data": out.tobytes(),
    }


def fill_image(msg: Any, pixels: np.ndarray, encoding: str = "rgb8") -> Any:
    """Set the image fields of `msg` (rclpy or rosbags Image) from an array; returns `msg`."""
    fields = numpy_to_image_fields(pixels, encoding)
    if isinstance(getattr(msg, "data", None), np.ndarray):  # rosbags serialises numpy arrays only
        fields["data"] = np.frombuffer(fields["data"], np.uint8)
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg
