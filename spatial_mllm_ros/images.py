"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge and without importing ROS.

Works by duck typing on rclpy messages and rosbags-deserialised messages alike (`data` may be
array.array, bytes, a list or a numpy array). Raw images are read through a zero-copy strided view
of `data` (rows of `step` bytes, sliced to `width`) and copied once into RGB uint8 HxWx3.
"""

from __future__ import annotations

import sys
import zlib
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

# 16.8 Mpx (4096 x 4096): 4K UHD and 16 MP sensors fit, at most 48 MB of RGB per frame. Anything larger
# from the network is refused before it is allocated; compressed images by the size in their header.
DEFAULT_MAX_PIXELS = 1 << 24
MM_PER_M = 1000.0
SUPPORTED_COMPRESSED = "jpeg, png, compressedDepth png"

_JPEG_MAGIC = b"\xff\xd8\xff"
_JPEG_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))  # TEM, RST0..7: no length field
_JPEG_NOT_BEFORE_FRAME = frozenset((0x00, 0xD8, 0xD9, 0xDA))  # stuffing, SOI, EOI, start of scan
# SOF0..SOF15 (baseline, extended, progressive, lossless, hierarchical, arithmetic); C4, C8 and CC in that
# range are DHT, JPG and DAC.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_SOF_FIELDS = 8  # length field, precision, height, width, component count
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_IHDR = b"\x00\x00\x00\x0dIHDR"  # the first chunk: length 13, type IHDR
_PNG_HEADER_BYTES = 33  # signature 8 + IHDR chunk (length 4, type 4, data 13, CRC 4)
# Colour types and the bit depths the PNG spec allows for each; all decode to arrays _decoded_to_rgb takes.
_PNG_COLOUR_TYPES: dict[int, tuple[str, tuple[int, ...]]] = {
    0: ("grey", (1, 2, 4, 8, 16)),
    2: ("RGB", (8, 16)),
    3: ("palette", (1, 2, 4, 8)),
    4: ("grey+alpha", (8, 16)),
    6: ("RGBA", (8, 16)),
}
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


@dataclass(frozen=True)
class _FileHeader:
    """A compressed file's size as its header states it: checked before decoding, compared after."""

    kind: str  # "JPEG" or "PNG"
    width: int
    height: int
    bit_depth: int
    colour_type: int | None = None  # PNG only

    @property
    def summary(self) -> str:
        """How error messages name the file, e.g. '640x480 16-bit PNG grey'."""
        colour = "" if self.colour_type is None else f" {_PNG_COLOUR_TYPES[self.colour_type][0]}"
        return f"{self.width}x{self.height} {self.bit_depth}-bit {self.kind}{colour}"


def _jpeg_header(data: memoryview) -> _FileHeader:
    """Follow segment lengths from SOI to the first start-of-frame segment and read its size.

    Walks the whole payload, not a fixed head: EXIF and ICC segments before the frame header can exceed
    64 KB. The walk stops at the frame header, so it costs a few segments whatever the image size.
    """
    if b"\xff\xd9" not in data[-32:].tobytes():
        raise CorruptImageError(f"JPEG of {len(data)} bytes has no end-of-image marker (truncated)")
    end, pos = len(data), 2
    while pos + 1 < end:
        if data[pos] != 0xFF:
            raise CorruptImageError(
                f"JPEG header is broken: byte 0x{data[pos]:02x} at offset {pos} where a marker should be"
            )
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte: any number of them may precede a marker
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in _JPEG_NOT_BEFORE_FRAME:
            raise CorruptImageError(
                f"JPEG header is broken: marker 0x{marker:02x} at offset {pos} before any frame header "
                "(no image size)"
            )
        if pos + 4 > end:
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < (_JPEG_SOF_FIELDS if marker in _JPEG_SOF else 2):
            raise CorruptImageError(f"JPEG header is broken: marker 0x{marker:02x} with length {length}")
        if marker in _JPEG_SOF:
            if pos + 2 + _JPEG_SOF_FIELDS > end:
                break
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            return _FileHeader("JPEG", int.from_bytes(data[pos + 7 : pos + 9], "big"), height, data[pos + 4])
        pos += 2 + length
    raise CorruptImageError(f"JPEG of {end} bytes ends before its frame header (truncated, no image size)")


def _png_header(data: memoryview) -> _FileHeader:
    """Size, bit depth and colour type from IHDR, which the PNG spec puts first; refuse what is not PNG."""
    if len(data) < _PNG_HEADER_BYTES:
        raise CorruptImageError(
            f"PNG of {len(data)} bytes is shorter than its signature + IHDR ({_PNG_HEADER_BYTES} bytes): "
            "truncated"
        )
    if data[8:16] != _PNG_IHDR:
        raise CorruptImageError("PNG header is broken: the first chunk is not a 13-byte IHDR")
    if zlib.crc32(data[12:29]) != int.from_bytes(data[29:33], "big"):
        raise CorruptImageError("PNG header is broken: IHDR checksum does not match its bytes")
    bit_depth, colour_type, compression, filtering, interlace = data[24:29]
    name, depths = _PNG_COLOUR_TYPES.get(colour_type, (f"colour type {colour_type}", ()))
    if bit_depth not in depths:
        allowed = "; ".join(f"{n} {'/'.join(map(str, d))}" for n, d in _PNG_COLOUR_TYPES.values())
        raise CorruptImageError(f"PNG {name} with bit depth {bit_depth} is not valid PNG; valid: {allowed}")
    if compression or filtering or interlace > 1:
        raise CorruptImageError(
            f"PNG header is broken: compression {compression}, filter {filtering}, interlace {interlace} "
            "(PNG defines 0, 0 and 0 or 1)"
        )
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return _FileHeader("PNG", width, height, bit_depth, colour_type)


def _file_header(buf: np.ndarray, fmt: str) -> _FileHeader:
    """Tell JPEG from PNG by signature (`format` is only a hint) and read the header, without decoding."""
    data = memoryview(buf)
    if data[:3] == _JPEG_MAGIC:
        return _jpeg_header(data)
    if data[:8] == _PNG_MAGIC:
        return _png_header(data)
    if not fmt or any(name in fmt for name in ("jpeg", "jpg", "png")):
        raise CorruptImageError(f"payload of {buf.size} bytes has no JPEG/PNG signature (format {fmt!r})")
    raise UnknownEncodingError(
        f"compressed format {fmt!r}; supported: {SUPPORTED_COMPRESSED} "
        "(only their headers are read to check the size before decoding)"
    )


def _decode_file(buf: np.ndarray, header: _FileHeader, max_pixels: int) -> np.ndarray:
    """Decode a JPEG (straight to RGB) or PNG (as stored) whose header size is within the limit."""
    _check_size(header.width, header.height, max_pixels, header.kind)
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB if header.kind == "JPEG" else cv2.IMREAD_UNCHANGED)
    if image is None:
        raise CorruptImageError(f"{header.kind} data of {buf.size} bytes could not be decoded")
    got = image.shape[1], image.shape[0]
    # Defence in depth: the decoder must have read the size that was checked. OpenCV applies a JPEG's
    # EXIF orientation, which may swap width and height.
    if got != (header.width, header.height) and not (
        header.kind == "JPEG" and got == (header.height, header.width)
    ):
        raise CorruptImageError(
            f"{header.kind} decoded to {got[0]}x{got[1]} but its header says {header.width}x{header.height}"
        )
    return image


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
    """compressed_depth_image_transport payload: 12-byte header, then a 16-bit single-channel PNG."""
    if "rvl" in fmt:
        raise UnknownEncodingError(f"compressed format {fmt!r}: only compressedDepth png is supported")
    if encoding not in ("16uc1", "32fc1"):
        raise UnknownEncodingError(f"compressedDepth of encoding {encoding!r}; supported: 16UC1, 32FC1")
    if buf.size <= _COMPRESSED_DEPTH_HEADER:
        raise CorruptImageError(f"compressedDepth payload of {buf.size} bytes has no room for header + PNG")
    payload = buf[_COMPRESSED_DEPTH_HEADER:]
    header = _file_header(payload, "png")
    if (header.kind, header.colour_type, header.bit_depth) != ("PNG", 0, 16):
        raise CorruptImageError(f"compressedDepth payload is a {header.summary}, expected a 16-bit grey PNG")
    image = _decode_file(payload, header, max_pixels)
    if encoding == "16uc1":
        return _depth_mm(image)
    quant_a, quant_b = (np.float32(x) for x in buf[4:12].view("<f4"))
    with np.errstate(divide="ignore"):
        depth = quant_a / (image.astype(np.float32) - quant_b)
    depth[image == 0] = np.nan
    return DecodedImage(depth_to_rgb(depth), depth)


def compressed_to_numpy(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """sensor_msgs/CompressedImage (jpeg, png, "compressedDepth") -> the same outputs as image_to_numpy.

    The size in the file header is checked against max_pixels before anything is decoded, so a small
    message that claims a huge image (a decompression bomb) costs a header read, not the image.
    """
    fmt = str(msg.format).strip().lower()
    encoding = fmt.split(";", 1)[0].strip() if ";" in fmt else ""
    buf = np.ascontiguousarray(byte_view(msg.data))  # a no-op for message data, which is contiguous
    if "compresseddepth" in fmt:
        return _compressed_depth(buf, encoding, fmt, max_pixels)
    header = _file_header(buf, fmt)
    image = _decode_file(buf, header, max_pixels)
    if header.kind == "JPEG":
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
