"""Image/CompressedImage -> numpy: every encoding, padded rows, byte order, compressed inputs, and one
clear typed error per malformed case. Expected values are computed here independently (numpy)."""

from __future__ import annotations

import array
import struct
import zlib
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from spatial_mllm_ros.errors import (
    BadShapeError,
    CorruptImageError,
    DataTooShortError,
    ImageDecodeError,
    ImageEncodeError,
    ImageTooLargeError,
    StepTooSmallError,
    UnknownEncodingError,
)
from spatial_mllm_ros.images import (
    DEFAULT_MAX_PIXELS,
    ENCODINGS,
    compressed_to_numpy,
    decode,
    fill_image,
    image_to_numpy,
    numpy_to_image_fields,
)

H, W = 6, 10
RNG = np.random.default_rng(3)


def _u8(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def _gray3(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def _depth_mm(mm: np.ndarray) -> np.ndarray:
    depth = mm.astype(np.float32) / np.float32(1000)
    depth[mm == 0] = np.nan
    return depth


def _yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BT.601 video range, the conversion OpenCV documents for packed YUV 4:2:2 (Y below 16 is black)."""
    y, u, v = (c.astype(np.float64) for c in (y, u, v))
    c = 1.164 * np.maximum(y - 16, 0)
    rgb = np.stack(
        [c + 1.596 * (v - 128), c - 0.813 * (v - 128) - 0.391 * (u - 128), c + 2.018 * (u - 128)], -1
    )
    return np.clip(np.rint(rgb), 0, 255)


def _packed_yuv(order: str) -> tuple[np.ndarray, np.ndarray]:
    """A packed 4:2:2 image in byte order `order` ("UYVY" or "YUYV") and its RGB."""
    y, u, v = _u8(H, W), _u8(H, W // 2), _u8(H, W // 2)
    lumas = iter([y[:, 0::2], y[:, 1::2]])
    stored = np.stack([next(lumas) if c == "Y" else {"U": u, "V": v}[c] for c in order], axis=-1)
    rgb = _yuv_to_rgb(y, np.repeat(u, 2, axis=1), np.repeat(v, 2, axis=1))
    return stored.reshape(H, W, 2), rgb


def _case_rgb() -> tuple[np.ndarray, np.ndarray, None]:
    a = _u8(H, W, 3)
    return a, a, None


def _case_bgr() -> tuple[np.ndarray, np.ndarray, None]:
    a = _u8(H, W, 3)
    return a, a[..., ::-1], None


def _case_rgba() -> tuple[np.ndarray, np.ndarray, None]:
    a = _u8(H, W, 4)
    return a, a[..., :3], None


def _case_bgra() -> tuple[np.ndarray, np.ndarray, None]:
    a = _u8(H, W, 4)
    return a, a[..., 2::-1], None


def _case_mono8() -> tuple[np.ndarray, np.ndarray, None]:
    a = _u8(H, W)
    return a, _gray3(a), None


def _case_mono16(order: str) -> Callable[[], tuple[np.ndarray, np.ndarray, None]]:
    def make() -> tuple[np.ndarray, np.ndarray, None]:
        a = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
        return a.astype(f"{order}u2"), _gray3((a >> 8).astype(np.uint8)), None

    return make


def _case_16uc1(order: str) -> Callable[[], tuple[np.ndarray, None, np.ndarray]]:
    def make() -> tuple[np.ndarray, None, np.ndarray]:
        a = RNG.integers(0, 10000, (H, W), dtype=np.uint16)
        a[0, :3] = 0  # no reading
        return a.astype(f"{order}u2"), None, _depth_mm(a)

    return make


def _case_32fc1(order: str) -> Callable[[], tuple[np.ndarray, None, np.ndarray]]:
    def make() -> tuple[np.ndarray, None, np.ndarray]:
        a = RNG.uniform(0.1, 12.0, (H, W)).astype(np.float32)
        a[1, 1] = np.nan
        return a.astype(f"{order}f4"), None, a

    return make


def _case_yuv(order: str) -> Callable[[], tuple[np.ndarray, np.ndarray, None]]:
    return lambda: (*_packed_yuv(order), None)


# encoding -> stored array (wire byte order), expected RGB (None: depth visualisation), expected depth
CASES: dict[str, Callable[[], tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]] = {
    "rgb8": _case_rgb,
    "bgr8": _case_bgr,
    "8UC3": _case_bgr,
    "rgba8": _case_rgba,
    "bgra8": _case_bgra,
    "8UC4": _case_bgra,
    "mono8": _case_mono8,
    "8UC1": _case_mono8,
    "mono16": _case_mono16("<"),
    "mono16/big-endian": _case_mono16(">"),
    "16UC1": _case_16uc1("<"),
    "16UC1/big-endian": _case_16uc1(">"),
    "32FC1": _case_32fc1("<"),
    "32FC1/big-endian": _case_32fc1(">"),
    "yuv422": _case_yuv("UYVY"),
    "uyvy": _case_yuv("UYVY"),
    "yuv422_yuy2": _case_yuv("YUYV"),
    "yuyv": _case_yuv("YUYV"),
}


def _wire(stored: np.ndarray, pad: int) -> tuple[bytes, int]:
    rows = np.ascontiguousarray(stored).reshape(stored.shape[0], -1).view(np.uint8)
    out = np.full((rows.shape[0], rows.shape[1] + pad), 0xA5, np.uint8)  # padding is garbage, not zeros
    out[:, : rows.shape[1]] = rows
    return out.tobytes(), out.shape[1]


CONTAINERS: dict[str, Callable[[bytes], Any]] = {
    "bytes": bytes,
    "array.array": lambda b: array.array("B", b),  # rclpy
    "numpy": lambda b: np.frombuffer(b, np.uint8).copy(),  # rosbags
    "list": list,
}


def _msg(kind: str, stored: np.ndarray, pad: int = 0, container: str = "bytes", **overrides: Any) -> Any:
    data, step = _wire(stored, pad)
    fields = dict(
        height=stored.shape[0],
        width=stored.shape[1],
        encoding=kind,
        step=step,
        is_bigendian=int(stored.dtype.byteorder == ">"),
        data=CONTAINERS[container](data),
    )
    fields.update(overrides)
    return SimpleNamespace(**fields)


def _check(decoded: Any, rgb: np.ndarray | None, depth: np.ndarray | None, tol: int = 0) -> None:
    assert decoded.rgb.dtype == np.uint8 and decoded.rgb.shape == (H, W, 3) and decoded.rgb.flags.c_contiguous
    if rgb is not None:
        np.testing.assert_allclose(decoded.rgb, rgb, atol=tol, rtol=0)
    if depth is None:
        assert decoded.depth is None
        return
    assert decoded.depth.dtype == np.float32 and decoded.depth.dtype.isnative
    np.testing.assert_array_equal(decoded.depth, depth)
    # depth is visualised for viewing: grey, nearest bright, invalid black
    g = decoded.rgb[..., 0]
    assert (decoded.rgb == g[..., None]).all()
    valid = np.isfinite(depth)
    assert g[~valid].max(initial=0) == 0
    assert g[np.unravel_index(np.nanargmin(depth), depth.shape)] == 255


@pytest.mark.parametrize("pad", [0, 3, 64], ids=["tight", "pad3", "pad64"])
@pytest.mark.parametrize("case", CASES)
def test_every_encoding_converts_exactly(case: str, pad: int) -> None:
    stored, rgb, depth = CASES[case]()
    msg = _msg(case.split("/")[0], stored, pad)
    _check(image_to_numpy(msg), rgb, depth, tol=1 if "yu" in case or "uyvy" in case else 0)


def test_table_covers_every_supported_encoding() -> None:
    assert {c.split("/")[0].lower() for c in CASES} == set(ENCODINGS)


@pytest.mark.parametrize("container", CONTAINERS)
def test_any_data_container(container: str) -> None:
    stored, rgb, _ = _case_bgr()
    _check(image_to_numpy(_msg("bgr8", stored, 5, container)), rgb, None)


def test_output_owns_its_memory() -> None:
    stored, rgb, _ = _case_rgb()
    msg = _msg("rgb8", stored, 0, "numpy")
    out = image_to_numpy(msg).rgb
    msg.data[:] = 0  # rclpy/rosbags may reuse or free the message buffer
    np.testing.assert_array_equal(out, rgb)


def test_encoding_lookup_ignores_case_and_longer_data() -> None:
    stored, rgb, _ = _case_rgb()
    msg = _msg("RGB8", stored)
    msg.data += b"\x00" * 17
    _check(image_to_numpy(msg), rgb, None)


def _bag_image(**fields: Any) -> Any:
    """A rosbags sensor_msgs/Image (what AnyReader deserialises from a bag)."""
    types = get_typestore(Stores.ROS2_JAZZY).types
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="cam"
    )
    return types["sensor_msgs/msg/Image"](header=header, is_bigendian=0, **fields)


def _cdr_round_trip(msg: Any) -> Any:
    store = get_typestore(Stores.ROS2_JAZZY)
    return store.deserialize_cdr(store.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)


def test_rclpy_and_rosbags_messages() -> None:
    """The same conversion works on a real rclpy message and a rosbags CDR round trip."""
    from sensor_msgs.msg import Image

    stored, rgb, _ = _case_bgr()
    data, step = _wire(stored, 7)
    ros = Image(height=H, width=W, encoding="bgr8", step=step, data=data)
    _check(image_to_numpy(ros), rgb, None)

    bag_msg = _bag_image(height=H, width=W, encoding="bgr8", step=step, data=np.frombuffer(data, np.uint8))
    _check(image_to_numpy(_cdr_round_trip(bag_msg)), rgb, None)


# --- malformed raw images: each its own error class and reason ------------------------------------


def _bad(**overrides: Any) -> Any:
    return _msg("rgb8", _u8(H, W, 3), 2, **overrides)


MALFORMED: dict[str, tuple[Callable[[], Any], type[ImageDecodeError], str]] = {
    "unknown encoding": (lambda: _bad(encoding="rgb9"), UnknownEncodingError, "rgb9"),
    "empty encoding": (lambda: _bad(encoding=""), UnknownEncodingError, "''"),
    "zero width": (lambda: _bad(width=0), BadShapeError, "0x6"),
    "zero height": (lambda: _bad(height=0), BadShapeError, "10x0"),
    "negative height": (lambda: _bad(height=-4), BadShapeError, "10x-4"),
    "odd width yuv422": (lambda: _msg("yuv422", _u8(H, 7, 2)), BadShapeError, "width 7 must be even"),
    "absurd size": (lambda: _bad(width=100_000, height=100_000), ImageTooLargeError, "10000000000 px"),
    "step < width*bpp": (lambda: _bad(step=W * 3 - 1), StepTooSmallError, "step 29 < width 10 * 3"),
    "step < width*bpp mono16": (lambda: _msg("mono16", _u8(H, W), step=W), StepTooSmallError, "* 2 bytes"),
    "data shorter than step*height": (
        lambda: _bad(data=bytes(32 * H - 1)),
        DataTooShortError,
        "191 bytes < step 32 * height 6",
    ),
    "no data": (lambda: _bad(data=b""), DataTooShortError, "0 bytes"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_image_gives_its_own_error(case: str) -> None:
    make, error, text = MALFORMED[case]
    with pytest.raises(error) as info:
        image_to_numpy(make())
    assert text in str(info.value)
    assert str(info.value).startswith(info.value.reason)
    assert isinstance(info.value, ValueError)  # callers that only know ValueError still catch it


def test_pixel_limit_is_configurable() -> None:
    msg = _msg("rgb8", _u8(H, W, 3))
    with pytest.raises(ImageTooLargeError, match="limit 59"):
        image_to_numpy(msg, max_pixels=59)
    assert image_to_numpy(msg, max_pixels=60).rgb.shape == (H, W, 3)


def test_error_reasons_are_distinct() -> None:
    classes = [
        UnknownEncodingError,
        BadShapeError,
        ImageTooLargeError,
        StepTooSmallError,
        DataTooShortError,
        CorruptImageError,
    ]
    assert len({c.reason for c in classes}) == len(classes)


# --- compressed ----------------------------------------------------------------------------------


def _encode(ext: str, image: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok
    return buf.tobytes()


def _compressed(fmt: str, data: bytes) -> SimpleNamespace:
    return SimpleNamespace(format=fmt, data=array.array("B", data))


def test_jpeg_matches_opencv_decode() -> None:
    rgb = cv2.GaussianBlur(_u8(48, 64, 3), (5, 5), 0)
    data = _encode(".jpg", rgb[..., ::-1], cv2.IMWRITE_JPEG_QUALITY, 90)
    decoded = compressed_to_numpy(_compressed("rgb8; jpeg compressed bgr8", data))
    reference = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    np.testing.assert_array_equal(decoded.rgb, reference)
    assert decoded.depth is None and decoded.rgb.flags.c_contiguous
    assert np.abs(decoded.rgb.astype(int) - rgb).mean() < 8  # and it is the image that was sent


def test_mono_jpeg_gives_grey_rgb() -> None:
    gray = cv2.GaussianBlur(_u8(32, 40), (5, 5), 0)
    decoded = compressed_to_numpy(_compressed("mono8; jpeg compressed mono8", _encode(".jpg", gray)))
    assert decoded.rgb.shape == (32, 40, 3)
    assert (decoded.rgb == decoded.rgb[..., :1]).all()


PNG_CASES: dict[str, tuple[str, Callable[[], tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]]] = {
    # name: (format, () -> (image as OpenCV writes it, expected rgb, expected depth))
    "bgr8": ("rgb8; png compressed bgr8", lambda: (lambda a: (a, a[..., ::-1], None))(_u8(H, W, 3))),
    "bgra8": ("bgra8; png compressed bgra8", lambda: (lambda a: (a, a[..., 2::-1], None))(_u8(H, W, 4))),
    "mono8": ("mono8; png compressed mono8", lambda: (lambda a: (a, _gray3(a), None))(_u8(H, W))),
    "mono16": (
        "mono16; png compressed mono16",
        lambda: (lambda a: (a, _gray3((a >> 8).astype(np.uint8)), None))(
            RNG.integers(0, 65536, (H, W), dtype=np.uint16)
        ),
    ),
    "16UC1": (
        "16UC1; png compressed 16UC1",
        lambda: (lambda a: (a, None, _depth_mm(a)))(RNG.integers(0, 5000, (H, W), dtype=np.uint16)),
    ),
}


@pytest.mark.parametrize("case", PNG_CASES)
def test_png_is_lossless(case: str) -> None:
    fmt, make = PNG_CASES[case]
    image, rgb, depth = make()
    _check(compressed_to_numpy(_compressed(fmt, _encode(".png", image))), rgb, depth)


def _compressed_depth_header(quant_a: float = 0.0, quant_b: float = 0.0) -> bytes:
    return np.array([0], "<i4").tobytes() + np.array([quant_a, quant_b], "<f4").tobytes()


def test_compressed_depth_16uc1() -> None:
    mm = RNG.integers(0, 9000, (H, W), dtype=np.uint16)
    mm[2, 2] = 0
    data = _compressed_depth_header() + _encode(".png", mm)
    _check(compressed_to_numpy(_compressed("16UC1; compressedDepth png", data)), None, _depth_mm(mm))


def test_compressed_depth_32fc1_inverse_quantisation() -> None:
    """Encode as compressed_depth_image_transport does (depth_quantization=100, depth_max=10)."""
    depth = RNG.uniform(0.3, 9.5, (H, W)).astype(np.float32)
    depth[0, 0] = np.nan
    quant_a = 100.0 * (100.0 + 1.0)
    quant_b = 1.0 - quant_a / 10.0
    inv = np.where(np.isfinite(depth), quant_a / depth + quant_b, 0).astype(np.uint16)
    data = _compressed_depth_header(quant_a, quant_b) + _encode(".png", inv)
    decoded = compressed_to_numpy(_compressed("32FC1; compressedDepth", data))
    assert decoded.depth.dtype == np.float32 and np.isnan(decoded.depth[0, 0])
    valid = np.isfinite(depth)
    np.testing.assert_allclose(decoded.depth[valid], depth[valid], rtol=0.01)  # quantisation step
    assert decoded.rgb.shape == (H, W, 3)


def test_decode_dispatches_on_message_shape() -> None:
    stored, rgb, _ = _case_rgb()
    np.testing.assert_array_equal(decode(_msg("rgb8", stored)).rgb, rgb)
    png = _compressed("png", _encode(".png", stored[..., ::-1]))
    np.testing.assert_array_equal(decode(png).rgb, rgb)


def _jpeg() -> bytes:
    return _encode(".jpg", cv2.GaussianBlur(_u8(40, 48, 3), (3, 3), 0))


def _png() -> bytes:
    return _encode(".png", _u8(40, 48, 3))


def _splice(data: bytes, at: int, new: bytes, drop: int = 0) -> bytes:
    """`data` with `drop` bytes at offset `at` replaced by `new`."""
    return data[:at] + new + data[at + drop :]


def _segment(marker: int, body: bytes) -> bytes:
    """One JPEG marker segment: FF, marker, big-endian length (itself included), body."""
    return bytes((0xFF, marker)) + struct.pack(">H", len(body) + 2) + body


def _with_ihdr(png: bytes, at: int, value: bytes) -> bytes:
    """The PNG with IHDR data bytes from `at` replaced and the chunk CRC recomputed, as a valid file has."""
    chunk = bytearray(png[12:29])  # chunk type + 13 data bytes: what the CRC covers
    chunk[4 + at : 4 + at + len(value)] = value
    return png[:12] + bytes(chunk) + struct.pack(">I", zlib.crc32(chunk)) + png[33:]


def _corrupt_jpeg_body() -> bytes:
    data = bytearray(_jpeg())
    dht = data.index(b"\xff\xc4")
    data[dht + 4 : dht + 40] = b"\xff" * 36  # Huffman table destroyed, size and end marker intact
    return bytes(data)


COMPRESSED_MALFORMED: dict[str, tuple[Callable[[], Any], type[ImageDecodeError], str]] = {
    "random bytes as jpeg": (lambda: _compressed("jpeg", _u8(500).tobytes()), CorruptImageError, "signature"),
    "empty payload": (lambda: _compressed("jpeg", b""), CorruptImageError, "0 bytes"),
    "truncated jpeg": (lambda: _compressed("jpeg", _jpeg()[:-40]), CorruptImageError, "truncated"),
    "corrupt jpeg tables": (lambda: _compressed("jpeg", _corrupt_jpeg_body()), CorruptImageError, "JPEG"),
    "jpeg header without size": (
        lambda: _compressed("jpeg", b"\xff\xd8\xff\xe0\x00\x04ab\xff\xd9"),
        CorruptImageError,
        "no image size",
    ),
    "truncated png": (lambda: _compressed("png", _png()[:-50]), CorruptImageError, "PNG"),
    "png with broken header": (
        lambda: _compressed("png", _png()[:8] + bytes(40)),
        CorruptImageError,
        "PNG header",
    ),
    "unknown compressed format": (
        lambda: _compressed("tiff", b"II*\x00" + bytes(20)),
        UnknownEncodingError,
        "tiff",
    ),
    "compressedDepth rvl": (
        lambda: _compressed("16UC1; compressedDepth rvl", bytes(40)),
        UnknownEncodingError,
        "rvl",
    ),
    "compressedDepth of rgb8": (
        lambda: _compressed(
            "rgb8; compressedDepth png",
            _compressed_depth_header() + _encode(".png", _u8(4, 4).astype(np.uint16)),
        ),
        UnknownEncodingError,
        "rgb8",
    ),
    "compressedDepth header only": (
        lambda: _compressed("16UC1; compressedDepth png", bytes(12)),
        CorruptImageError,
        "no room",
    ),
    "compressedDepth 8-bit png": (
        lambda: _compressed(
            "16UC1; compressedDepth png", _compressed_depth_header() + _encode(".png", _u8(4, 4))
        ),
        CorruptImageError,
        "4x4 8-bit PNG grey, expected a 16-bit grey PNG",
    ),
    "jpeg garbage where a marker should be": (
        lambda: _compressed("jpeg", _splice(_jpeg(), 20, b"\x00")),  # after the 18-byte APP0 segment
        CorruptImageError,
        "byte 0x00 at offset 20 where a marker should be",
    ),
    "jpeg scan before any frame header": (
        lambda: _compressed("jpeg", b"\xff\xd8" + _segment(0xDA, bytes(4)) + b"\xff\xd9"),
        CorruptImageError,
        "marker 0xda at offset 2 before any frame header",
    ),
    "jpeg truncated inside its header": (
        lambda: _compressed("jpeg", _jpeg()[:60] + b"\xff\xd9"),
        CorruptImageError,
        "ends before its frame header",
    ),
    "jpeg frame header too short": (
        lambda: _compressed("jpeg", b"\xff\xd8" + _segment(0xC0, b"\x08\x00") + b"\xff\xd9"),
        CorruptImageError,
        "marker 0xc0 with length 4",
    ),
    "png truncated inside IHDR": (lambda: _compressed("png", _png()[:20]), CorruptImageError, "truncated"),
    "png IHDR checksum": (
        lambda: _compressed("png", _splice(_png(), 29, bytes(4), drop=4)),
        CorruptImageError,
        "IHDR checksum",
    ),
    "png bit depth invalid for its colour type": (
        lambda: _compressed("png", _with_ihdr(_png(), 8, bytes((4, 2)))),
        CorruptImageError,
        "PNG RGB with bit depth 4 is not valid PNG; valid: grey 1/2/4/8/16; RGB 8/16",
    ),
    "png unknown colour type": (
        lambda: _compressed("png", _with_ihdr(_png(), 8, bytes((8, 5)))),
        CorruptImageError,
        "colour type 5",
    ),
    "png unknown interlace method": (
        lambda: _compressed("png", _with_ihdr(_png(), 12, b"\x02")),
        CorruptImageError,
        "interlace 2",
    ),
    "webp": (
        lambda: _compressed("webp", b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(24)),
        UnknownEncodingError,
        "supported: jpeg, png, compressedDepth png",
    ),
    "compressedDepth holding a jpeg": (
        lambda: _compressed("16UC1; compressedDepth png", _compressed_depth_header() + _jpeg()),
        CorruptImageError,
        "payload is a 48x40 8-bit JPEG, expected a 16-bit grey PNG",
    ),
    "jpeg over pixel limit": (
        lambda: SimpleNamespace(format="jpeg", data=_jpeg(), limit=1000),
        ImageTooLargeError,
        "48x40",
    ),
    "png over pixel limit": (
        lambda: SimpleNamespace(format="png", data=_png(), limit=1000),
        ImageTooLargeError,
        "48x40",
    ),
}


@pytest.mark.parametrize("case", COMPRESSED_MALFORMED)
def test_malformed_compressed_gives_its_own_error(case: str) -> None:
    make, error, text = COMPRESSED_MALFORMED[case]
    msg = make()
    with pytest.raises(error) as info:
        compressed_to_numpy(msg, max_pixels=getattr(msg, "limit", DEFAULT_MAX_PIXELS))
    assert text in str(info.value)


# --- decompression bombs: the header size is checked before anything is decoded -------------------

BOMB_SIDE = 8000  # issue 25: a 2 KB JPEG whose header claimed 8000 x 8000 was decoded (+184 MB RSS)


def _claim_jpeg(jpeg: bytes, sof: bytes, width: int, height: int) -> bytes:
    """The JPEG with the size in its frame header (marker `sof`) replaced; the scan data stays 16x16."""
    out = bytearray(jpeg)
    at = out.index(sof)
    out[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(out)


BOMBS: dict[str, Callable[[], SimpleNamespace]] = {
    "jpeg": lambda: _compressed(
        "rgb8; jpeg compressed bgr8",
        _claim_jpeg(_encode(".jpg", _u8(16, 16, 3)), b"\xff\xc0", BOMB_SIDE, BOMB_SIDE),
    ),
    "progressive jpeg": lambda: _compressed(
        "jpeg",
        _claim_jpeg(
            _encode(".jpg", _u8(16, 16, 3), cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
            b"\xff\xc2",
            BOMB_SIDE,
            BOMB_SIDE,
        ),
    ),
    "png": lambda: _compressed(
        "rgb8; png compressed bgr8",
        _with_ihdr(_encode(".png", _u8(16, 16, 3)), 0, struct.pack(">II", BOMB_SIDE, BOMB_SIDE)),
    ),
    "compressedDepth": lambda: _compressed(
        "16UC1; compressedDepth png",
        _compressed_depth_header()
        + _with_ihdr(
            _encode(".png", _u8(16, 16).astype(np.uint16)), 0, struct.pack(">II", BOMB_SIDE, BOMB_SIDE)
        ),
    ),
}


@pytest.fixture
def imdecode_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the payloads cv2.imdecode is given (it still decodes for real)."""
    calls: list[int] = []
    real = cv2.imdecode

    def counting(buf: np.ndarray, flags: int) -> np.ndarray | None:
        calls.append(len(buf))
        return real(buf, flags)

    monkeypatch.setattr(cv2, "imdecode", counting)
    return calls


@pytest.mark.parametrize("case", BOMBS)
def test_decompression_bomb_is_refused_from_its_header(case: str, imdecode_calls: list[int]) -> None:
    msg = BOMBS[case]()
    assert len(msg.data) < 2048
    assert (
        BOMB_SIDE * BOMB_SIDE > DEFAULT_MAX_PIXELS
    )  # a real image of the claimed size is over the limit too
    with pytest.raises(ImageTooLargeError) as info:
        compressed_to_numpy(msg)  # the default limit, as buffer.max_pixels defaults to
    assert info.value.reason == "too_large" and f"{BOMB_SIDE}x{BOMB_SIDE} = 64000000 px" in str(info.value)
    assert imdecode_calls == []  # refused from the header: nothing was decoded or allocated


AT_LIMIT: dict[str, Callable[[], SimpleNamespace]] = {
    "jpeg": lambda: _compressed("jpeg", _jpeg()),
    "png": lambda: _compressed("png", _png()),
    "compressedDepth": lambda: _compressed(
        "16UC1; compressedDepth png",
        _compressed_depth_header() + _encode(".png", _u8(40, 48).astype(np.uint16)),
    ),
}


@pytest.mark.parametrize("case", AT_LIMIT)
def test_image_at_the_pixel_limit_decodes(case: str, imdecode_calls: list[int]) -> None:
    msg = AT_LIMIT[case]()
    assert compressed_to_numpy(msg, max_pixels=48 * 40).rgb.shape == (40, 48, 3)
    with pytest.raises(ImageTooLargeError, match="48x40 = 1920 px > limit 1919 px"):
        compressed_to_numpy(msg, max_pixels=48 * 40 - 1)
    assert len(imdecode_calls) == 1  # only the image within the limit was decoded


def _decoded_jpeg(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR_RGB)


def test_jpeg_frame_header_after_64_kb_of_metadata() -> None:
    """EXIF thumbnails and ICC profiles can put the frame header beyond the first 64 KB."""
    jpeg = _jpeg()
    comment = _segment(0xFE, bytes(40_000))
    decoded = compressed_to_numpy(_compressed("jpeg", _splice(jpeg, 2, comment + comment)))
    np.testing.assert_array_equal(decoded.rgb, _decoded_jpeg(jpeg))


def test_jpeg_marker_walk_skips_fill_bytes_standalone_markers_and_tables() -> None:
    """DHT (C4) and DAC (CC) share the SOF marker range; tables may come before the frame header."""
    jpeg = _jpeg()
    sof, dht, sos = jpeg.index(b"\xff\xc0"), jpeg.index(b"\xff\xc4"), jpeg.index(b"\xff\xda")
    moved = (
        jpeg[:sof] + b"\xff\xff\xff\x01" + jpeg[dht:sos] + _segment(0xCC, b"") + jpeg[sof:dht] + jpeg[sos:]
    )
    np.testing.assert_array_equal(compressed_to_numpy(_compressed("jpeg", moved)).rgb, _decoded_jpeg(jpeg))


def _exif_orientation(value: int) -> bytes:
    """An APP1 Exif segment holding only the orientation tag (0x0112, SHORT)."""
    ifd = struct.pack(">HHHIHHI", 1, 0x0112, 3, 1, value, 0, 0)
    return _segment(0xE1, b"Exif\x00\x00MM\x00\x2a" + struct.pack(">I", 8) + ifd)


def test_exif_rotated_jpeg_passes_the_size_check() -> None:
    """OpenCV turns a JPEG by its EXIF orientation: width and height swap, and that is not a mismatch."""
    jpeg = _jpeg()
    decoded = compressed_to_numpy(_compressed("jpeg", _splice(jpeg, 2, _exif_orientation(6))))
    np.testing.assert_array_equal(decoded.rgb, cv2.rotate(_decoded_jpeg(jpeg), cv2.ROTATE_90_CLOCKWISE))


def test_decoded_size_must_match_the_header(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: should the decoder ever read another size than the one checked, refuse it."""
    monkeypatch.setattr(cv2, "imdecode", lambda buf, flags: np.zeros((41, 48, 3), np.uint8))
    with pytest.raises(CorruptImageError, match="PNG decoded to 48x41 but its header says 48x40"):
        compressed_to_numpy(_compressed("png", _png()))


def _png_file(bit_depth: int, colour_type: int, row: bytes, palette: bytes = b"") -> bytes:
    """A one-row PNG written from the spec (OpenCV cannot write all of these kinds)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 2, 1, bit_depth, colour_type, 0, 0, 0)
    plte = chunk(b"PLTE", palette) if palette else b""
    idat = chunk(b"IDAT", zlib.compress(b"\x00" + row))  # filter type 0, then the samples
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + plte + idat + chunk(b"IEND", b"")


VALID_PNG_KINDS: dict[str, tuple[bytes, list[list[int]]]] = {
    # name: (PNG of 2x1 pixels, expected RGB of the two pixels)
    "grey 1-bit": (_png_file(1, 0, b"\x80"), [[255, 255, 255], [0, 0, 0]]),
    "palette 8-bit": (
        _png_file(8, 3, b"\x01\x00", b"\x0a\x14\x1e\xc8\x64\x32"),
        [[200, 100, 50], [10, 20, 30]],
    ),
    "grey+alpha 8-bit": (_png_file(8, 4, b"\x50\xff\x90\x00"), [[80, 80, 80], [144, 144, 144]]),
    "RGB 16-bit": (
        _png_file(16, 2, bytes.fromhex("123456789abcffff00008000")),
        [[0x12, 0x56, 0x9A], [255, 0, 128]],
    ),
    "RGBA 8-bit": (_png_file(8, 6, bytes.fromhex("0102030405060708")), [[1, 2, 3], [5, 6, 7]]),
}


@pytest.mark.parametrize("kind", VALID_PNG_KINDS)
def test_every_png_colour_type_decodes_to_rgb(kind: str) -> None:
    png, rgb = VALID_PNG_KINDS[kind]
    np.testing.assert_array_equal(compressed_to_numpy(_compressed("png", png)).rgb, np.array([rgb], np.uint8))


# --- numpy -> Image for publishing ---------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_publish_colour_round_trip(encoding: str) -> None:
    rgb = _u8(H, W, 3)
    fields = numpy_to_image_fields(rgb, encoding)
    assert (
        fields["encoding"] == encoding and fields["is_bigendian"] == 0 and isinstance(fields["data"], bytes)
    )
    assert fields["step"] * H == len(fields["data"])
    np.testing.assert_array_equal(image_to_numpy(SimpleNamespace(**fields)).rgb, rgb)


def test_publish_mono_and_depth() -> None:
    gray = _u8(H, W)
    np.testing.assert_array_equal(
        image_to_numpy(SimpleNamespace(**numpy_to_image_fields(gray, "mono8"))).rgb, _gray3(gray)
    )
    mm = RNG.integers(1, 9000, (H, W), dtype=np.uint16)
    back = image_to_numpy(SimpleNamespace(**numpy_to_image_fields(mm, "16UC1")))
    np.testing.assert_array_equal(back.depth, _depth_mm(mm))
    metres = RNG.uniform(0, 5, (H, W)).astype(np.float32)
    np.testing.assert_array_equal(
        image_to_numpy(SimpleNamespace(**numpy_to_image_fields(metres, "32FC1"))).depth, metres
    )


def test_fill_image_on_rclpy_and_rosbags_messages() -> None:
    from sensor_msgs.msg import Image

    rgb = _u8(H, W, 3)
    ros = fill_image(Image(), rgb, "bgr8")
    assert ros.step == W * 3
    np.testing.assert_array_equal(image_to_numpy(ros).rgb, rgb)

    bag_msg = fill_image(_bag_image(height=0, width=0, encoding="", step=0, data=np.zeros(0, np.uint8)), rgb)
    np.testing.assert_array_equal(image_to_numpy(_cdr_round_trip(bag_msg)).rgb, rgb)


@pytest.mark.parametrize(
    ("pixels", "encoding", "text"),
    [
        (np.zeros((H, W, 3), np.uint8), "yuv422", "cannot publish"),
        (np.zeros((H, W), np.uint8), "rgb8", "HxWx3"),
        (np.zeros((H, W, 3), np.float32), "rgb8", "uint8"),
        (np.zeros((H, W), np.float64), "32FC1", "float32"),
        (np.zeros((0, W, 3), np.uint8), "rgb8", "non-empty"),
    ],
)
def test_publish_rejects_mismatched_arrays(pixels: np.ndarray, encoding: str, text: str) -> None:
    with pytest.raises(ImageEncodeError, match=text):
        numpy_to_image_fields(pixels, encoding)
