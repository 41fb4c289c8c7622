"""Questions and typed answers: classify a question, name its closed answer set, parse model text.

Parsing takes the backticked value first (the MultiSPA convention) and falls back to free text, so
answers from our model, the paper's model and GPT-style sentences all land in the same typed values.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from spatial_mllm_ros.conventions import (
    ANGLE_UNIT,
    CHOICE_LETTERS,
    DIRECTIONS,
    KIND_UNIT,
    LENGTH_UNIT,
    NORM_COORD_UNIT,
    PIXEL_UNIT,
    YES_NO,
    QuestionKind,
    from_norm_coords,
)

__all__ = ["Answer", "Question", "classify_question", "closed_options", "parse_answer"]

MAX_PARSE_CHARS = 100_000  # parse only the head of absurdly long text: bounded work per answer


@dataclass(frozen=True)
class Question:
    """A question about frames; kind/options default to what classify_question/closed_options say."""

    text: str
    kind: QuestionKind | None = None
    options: tuple[str, ...] | None = None
    id: str = ""

    def resolved_kind(self) -> QuestionKind:
        """Return the given kind, or the one classified from the text."""
        return QuestionKind(self.kind) if self.kind is not None else classify_question(self.text)

    def resolved_options(self) -> tuple[str, ...] | None:
        """Return the given options, or the closed answer set implied by kind and text (None: open answer)."""
        if self.options is not None:
            return tuple(self.options) or None
        return closed_options(self.resolved_kind(), self.text)


@dataclass
class Answer:
    """A model answer: raw text plus its typed value (None when unparseable) and how sure the model was."""

    kind: QuestionKind
    raw: str
    value: Any = None
    unit: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None
    static: bool = False  # the answer says nothing moved ("did not move")
    # how unlike the checkpoint's familiar frames these frames are (1.0: the 99th percentile of familiar
    # ones; None: the checkpoint has no OOD statistics); see model/ood.py
    ood_score: float | None = None

    @property
    def ok(self) -> bool:
        """Whether a typed value was found."""
        return self.value is not None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict (kind as its string)."""
        d = asdict(self)
        d["kind"] = QuestionKind(self.kind).value
        if isinstance(d["value"], tuple):
            d["value"] = list(d["value"])
        return d

    def to_json(self) -> str:
        """One JSON object, e.g. for a std_msgs/String answer topic."""
        return json.dumps(self.to_dict(), ensure_ascii=False)


# ---------------------------------------------------------------- question classification

_CHOICE_Q = re.compile(
    r"\b(?:options?|choices?|choose|which of (?:the )?(?:points|dots|marks))\b|\(\s*[A-D]\s*\)"
    r"|\b[A-D]\s*[:.)]\s|\b(?:point|dot|mark)s?\s+[A-D]\b",
)
_Q_PATTERNS: tuple[tuple[QuestionKind, re.Pattern[str]], ...] = (
    (QuestionKind.VECTOR, re.compile(r"\b(?:vector|displacement in (?:x|3d)|\[ ?x ?, ?y ?, ?z ?\])", re.I)),
    (QuestionKind.COORDINATE, re.compile(
        r"\b(?:coordinates?|pixel location|pixel position|where (?:is|does|will)\b.*\bimage-?\d)"
        r"|\[ ?x ?, ?y ?\]",
        re.I,
    )),
    (QuestionKind.ANGLE, re.compile(
        r"\b(?:angle|degrees?|how (?:much|far) (?:did|has) .*\b(?:rotate|turn|yaw|pitch|tilt|pan)\w*)", re.I,
    )),
    (QuestionKind.DEPTH, re.compile(r"\bdepth\b|\bhow far (?:is|are) .*\bfrom the camera\b", re.I)),
    (QuestionKind.DIRECTION, re.compile(
        r"\bwhich direction\b|\bdirection\b|\b(?:left|right|up|down|forwards?|backwards?)\s+or\s+"
        r"(?:left|right|up|down|forwards?|backwards?)\b|\bwhich way\b",
        re.I,
    )),
    (QuestionKind.DISTANCE, re.compile(
        r"\b(?:distance|how far|how much .*\bmove|how many (?:mm|millimet|cm|centimet|met|inch)"
        r"|how (?:tall|long|wide|high|big)|height|length|width|size)\b",
        re.I,
    )),
    (QuestionKind.COUNT, re.compile(r"\bhow many\b", re.I)),
    (QuestionKind.YES_NO, re.compile(
        r"^\s*(?:is|are|was|were|did|does|do|has|have|had|can|could|will|would|should)\b", re.I,
    )),
)


def classify_question(text: str) -> QuestionKind:
    """Guess the answer kind from the question's wording (the kind decides scoring and parsing)."""
    head = text[:MAX_PARSE_CHARS] if isinstance(text, str) else ""
    if _CHOICE_Q.search(head):
        return QuestionKind.CHOICE
    for kind, pattern in _Q_PATTERNS:
        if pattern.search(head):
            return kind
    return QuestionKind.FREE


def closed_options(kind: QuestionKind | str, text: str = "") -> tuple[str, ...] | None:
    """Return the closed answer set of a question (directions named in it, yes/no, letters) or None."""
    kind = QuestionKind(kind)
    head = text[:MAX_PARSE_CHARS] if isinstance(text, str) else ""
    if kind is QuestionKind.YES_NO:
        return YES_NO
    if kind is QuestionKind.DIRECTION:
        named = {_DIRECTION_WORDS[w.lower()] for w in _DIRECTION_TOKEN.findall(head)}
        if len(named) >= 2:
            return tuple(d for d in DIRECTIONS if d in named)
        return DIRECTIONS
    if kind is QuestionKind.CHOICE:
        pairs = re.findall(r"(?<![A-Za-z])\(?([A-D])[\s:.)]|\b(?:point|dot|mark|option)\s+([A-D])\b", head)
        found = {a or b for a, b in pairs}
        found.discard("")
        if len(found) >= 2:
            return tuple(c for c in CHOICE_LETTERS if c in found)
        return CHOICE_LETTERS
    return None


# ---------------------------------------------------------------- answer parsing

_BACKTICK = re.compile(r"`([^`]{1,200})`")
_NUM = r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+−]?\.\d+"
_LENGTH_UNITS: dict[str, float] = {  # factor to millimetres
    "mm": 1.0, "millimeter": 1.0, "millimetre": 1.0,
    "cm": 10.0, "centimeter": 10.0, "centimetre": 10.0,
    "m": 1000.0, "meter": 1000.0, "metre": 1000.0,
    "in": 25.4, "inch": 25.4, '"': 25.4, "ft": 304.8, "foot": 304.8, "feet": 304.8,
}
_ANGLE_UNITS: dict[str, float] = {  # factor to degrees
    "deg": 1.0, "degree": 1.0, "°": 1.0, "rad": 180.0 / math.pi, "radian": 180.0 / math.pi,
}
_UNIT = (
    r"millimet(?:er|re)s?|mm|centimet(?:er|re)s?|cm|met(?:er|re)s?|m(?![a-z])|inch(?:es)?|in(?![a-z])(?!\s+[a-z])"
    r"|\"|feet|foot|ft|degrees?|deg|°|radians?|rad(?![a-z])"
)
_NUM_UNIT = re.compile(rf"(?<![\w.\-−])({_NUM})(?:\s*({_UNIT}))?", re.I)
_PAIR = re.compile(rf"[\[(]\s*({_NUM})\s*,\s*({_NUM})\s*[\])]")
_TRIPLE = re.compile(rf"[\[(]\s*({_NUM})\s*(?:mm|cm|m)?\s*,\s*({_NUM})\s*(?:mm|cm|m)?\s*,\s*({_NUM})\s*"
                     rf"(?:mm|cm|m)?\s*[\])](?:\s*({_UNIT}))?", re.I)
_LABELLED = r"\b{axis}\s*(?:[:=]|is|of)\s*({num})\s*({unit})?"
_LABELLED_XYZ = re.compile(
    r".*?".join(_LABELLED.format(axis=a, num=_NUM, unit=_UNIT) for a in ("x", "y", "z")), re.I | re.S,
)
_LABELLED_XY = re.compile(
    r".*?".join(_LABELLED.format(axis=a, num=_NUM, unit=_UNIT) for a in ("x", "y")), re.I | re.S,
)
_STATIC = re.compile(
    r"\b(?:did(?: not|n't) move|has(?: not|n't) moved|does(?: not|n't) move|not moved|no (?:motion|movement)|"
    r"stay(?:s|ed)? (?:still|in place|stationary)|remain(?:s|ed)? (?:still|static|stationary|in place)|"
    r"(?:is|was) (?:static|stationary))\b",
    re.I,
)
_DIRECTION_WORDS: dict[str, str] = {
    "left": "left", "leftward": "left", "leftwards": "left",
    "right": "right", "rightward": "right", "rightwards": "right",
    "up": "up", "upward": "up", "upwards": "up",
    "down": "down", "downward": "down", "downwards": "down",
    "forward": "forward", "forwards": "forward", "ahead": "forward",
    "backward": "backward", "backwards": "backward", "back": "backward",
}
_DIRECTION_TOKEN = re.compile(
    r"\b(" + "|".join(sorted(_DIRECTION_WORDS, key=len, reverse=True)) + r")\b", re.I,
)
_DIRECTION_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\baway from (?:the )?(?:camera|viewer)\b|\bfurther into the scene\b", re.I), "forward"),
    (re.compile(r"\btowards? (?:the )?(?:camera|viewer)\b|\bcloser to (?:the )?(?:camera|viewer)\b", re.I),
     "backward"),
)
_NOT_A_DIRECTION = re.compile(r"\b(?:up to|ended up|end up|right now|right answer|all right|that's right|"
                              r"back to (?:the )?(?:start|original))\b", re.I)
_NEGATED = re.compile(r"(?:\bnot|n't|\bno)\s+(?:\w+\s+){0,2}$", re.I)
_YES = re.compile(r"\b(?:yes|yeah|yep|true|correct|affirmative|indeed)\b", re.I)
_NO = re.compile(r"\b(?:no|nope|false|incorrect|negative)\b", re.I)
_LETTER = re.compile(
    r"\b(?i:option|answer|choice|point|dot|mark|label(?:led)?)\s*(?:is\s*|:\s*)?\(?([A-D])\)?(?![A-Za-z])"
    r"|\(([A-D])\)|^\s*([A-D])\s*(?:[.):]|$)",
    re.M,
)
_NUMBER_WORDS: dict[str, int] = {
    "zero": 0, "none": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}


def _num(text: str) -> float:
    return float(text.replace("−", "-").replace(",", "").lstrip("+"))


def _unit_key(unit: str) -> str:
    u = unit.lower()
    if u in ('"', "°", "m", "mm", "cm", "in", "ft", "deg", "rad", "feet"):
        return u
    return u.rstrip("s") if not u.endswith("inches") else "inch"


def _numbers(text: str) -> list[tuple[float, str | None]]:
    """All numbers in text with the unit that follows each (canonical key, or None)."""
    return [
        (_num(m.group(1)), _unit_key(m.group(2)) if m.group(2) else None) for m in _NUM_UNIT.finditer(text)
    ]


def _to_mm(value: float, unit: str | None) -> float | None:
    if unit is None:
        return value
    factor = _LENGTH_UNITS.get(unit)
    return value * factor if factor is not None else None


def _to_degrees(value: float, unit: str | None) -> float | None:
    if unit is None:
        return value
    factor = _ANGLE_UNITS.get(unit)
    return value * factor if factor is not None else None


def _unit_after(text: str, end: int) -> str | None:
    m = re.match(rf"\s*({_UNIT})", text[end:end + 24], re.I)
    return _unit_key(m.group(1)) if m else None


def _candidates(text: str) -> list[tuple[str, str | None]]:
    """Texts to parse in order of trust: each backticked value (with a unit written after it), then all."""
    out = [(m.group(1), _unit_after(text, m.end())) for m in _BACKTICK.finditer(text)]
    out.append((text, None))
    return out


def _scalar(text: str, convert: Any, kinds: dict[str, float]) -> float | None:
    for chunk, unit_after in _candidates(text):
        nums = _numbers(chunk)
        for value, unit in nums:  # a number with a unit of the right kind first
            if unit is not None and unit in kinds:
                return convert(value, unit)
        for value, unit in nums:  # then a bare number (canonical unit), unit possibly after a backtick
            if unit is None:
                converted = convert(value, unit_after) if unit_after in kinds else convert(value, None)
                if converted is not None:
                    return converted
    return None


def _direction(text: str) -> str | None:
    for chunk, _ in _candidates(text):
        cleaned = _NOT_A_DIRECTION.sub(" ", chunk)
        hits: list[tuple[int, str]] = []
        for m in _DIRECTION_TOKEN.finditer(cleaned):
            if not _NEGATED.search(cleaned[max(0, m.start() - 30):m.start()]):
                hits.append((m.start(), _DIRECTION_WORDS[m.group(1).lower()]))
        for pattern, direction in _DIRECTION_PHRASES:
            hits.extend((m.start(), direction) for m in pattern.finditer(cleaned))
        if hits:
            return min(hits)[1]
    return None


def _yes_no(text: str) -> str | None:
    for chunk, _ in _candidates(text):
        yes, no = _YES.search(chunk), _NO.search(chunk)
        if yes or no:
            if yes and no:
                return "yes" if yes.start() < no.start() else "no"
            return "yes" if yes else "no"
    return None


def _choice(text: str) -> str | None:
    for m in _BACKTICK.finditer(text):
        v = m.group(1).strip().strip("().").upper()
        if v in CHOICE_LETTERS:
            return v
    m = _LETTER.search(text)
    if m:
        return next(g for g in m.groups() if g)
    return None


def _pair(text: str) -> tuple[float, float] | None:
    for chunk, _ in _candidates(text):
        m = _PAIR.search(chunk) or _LABELLED_XY.search(chunk)
        if m:
            g = [x for x in m.groups() if x is not None and re.fullmatch(_NUM, x)]
            return _num(g[0]), _num(g[1])
        nums = _numbers(chunk)
        if chunk is not text and len(nums) == 2:
            return nums[0][0], nums[1][0]
    return None


def _triple(text: str) -> list[int] | None:
    for chunk, unit_after in _candidates(text):
        m = _TRIPLE.search(chunk)
        if m:
            unit = _unit_key(m.group(4)) if m.group(4) else unit_after
            factor = _LENGTH_UNITS.get(unit, 1.0) if unit else 1.0
            return [int(round(_num(m.group(i)) * factor)) for i in (1, 2, 3)]
        m = _LABELLED_XYZ.search(chunk)
        if m:
            vals = []
            for i in range(3):
                v, u = m.group(2 * i + 1), m.group(2 * i + 2)
                mm = _to_mm(_num(v), _unit_key(u) if u else None)
                vals.append(int(round(mm if mm is not None else _num(v))))
            return vals
    return None


def _count(text: str) -> int | None:
    for chunk, _ in _candidates(text):
        nums = _numbers(chunk)
        if nums:
            return int(round(nums[0][0]))
        m = re.search(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", chunk, re.I)
        if m:
            return _NUMBER_WORDS[m.group(1).lower()]
    return None


def _infer_kind(text: str) -> QuestionKind:
    """Kind from the answer alone (no question): the shape of the backticked value, else of the text."""
    for chunk, unit_after in _candidates(text):
        low = chunk.strip().lower()
        if _TRIPLE.search(chunk):
            return QuestionKind.VECTOR
        if _PAIR.search(chunk):
            return QuestionKind.COORDINATE
        if low in YES_NO:
            return QuestionKind.YES_NO
        if chunk.strip().strip("().") in CHOICE_LETTERS:
            return QuestionKind.CHOICE
        if low in _DIRECTION_WORDS:
            return QuestionKind.DIRECTION
        nums = _numbers(chunk)
        units = [u for _, u in nums if u] + ([unit_after] if unit_after else [])
        if any(u in _ANGLE_UNITS for u in units):
            return QuestionKind.ANGLE
        if any(u in _LENGTH_UNITS for u in units):
            return QuestionKind.DISTANCE
        if chunk is not text and nums:
            return QuestionKind.COUNT
    if _DIRECTION_TOKEN.search(text):
        return QuestionKind.DIRECTION
    if re.search(r"^\s*(?:yes|no)\b|\banswer is (?:yes|no)\b", text, re.I):
        return QuestionKind.YES_NO
    return QuestionKind.FREE


def _parse_value(kind: QuestionKind, text: str, frame_size: tuple[int, int] | None) -> tuple[Any, str | None]:
    if kind is QuestionKind.DIRECTION:
        return _direction(text), None
    if kind is QuestionKind.YES_NO:
        return _yes_no(text), None
    if kind is QuestionKind.CHOICE:
        return _choice(text), None
    if kind in (QuestionKind.DISTANCE, QuestionKind.DEPTH):
        mm = _scalar(text, _to_mm, _LENGTH_UNITS)
        return (None if mm is None else int(round(mm))), LENGTH_UNIT
    if kind is QuestionKind.ANGLE:
        deg = _scalar(text, _to_degrees, _ANGLE_UNITS)
        return (None if deg is None else round(deg, 2)), ANGLE_UNIT
    if kind is QuestionKind.COORDINATE:
        pair = _pair(text)
        if pair is None:
            return None, None
        if frame_size is not None:
            u, v = from_norm_coords(pair[0], pair[1], frame_size[0], frame_size[1])
            return [round(u, 2), round(v, 2)], PIXEL_UNIT
        return [int(round(pair[0])), int(round(pair[1]))], NORM_COORD_UNIT
    if kind is QuestionKind.VECTOR:
        return _triple(text), LENGTH_UNIT
    if kind is QuestionKind.COUNT:
        return _count(text), None
    ticks = _BACKTICK.findall(text)
    return (ticks[0].strip() if ticks else text.strip()) or None, None


def parse_answer(
    raw: str, kind: QuestionKind | str | None = None, frame_size: tuple[int, int] | None = None,
) -> Answer:
    """Parse model text into a typed Answer; never raises (unparseable -> value None, raw kept, error set).

    frame_size=(width, height) turns 0..1000 coordinates into pixels.
    """
    if not isinstance(raw, str):
        return Answer(QuestionKind(kind or QuestionKind.FREE), repr(raw)[:200], error="answer is not text")
    try:
        text = raw[:MAX_PARSE_CHARS]
        k = QuestionKind(kind) if kind is not None else _infer_kind(text)
        static = bool(_STATIC.search(text))
        value, unit = _parse_value(k, text, frame_size)
        if value is None and static:
            if k in (QuestionKind.DISTANCE, QuestionKind.ANGLE):
                value, unit = 0, KIND_UNIT[k]
            elif k is QuestionKind.VECTOR:
                value, unit = [0, 0, 0], LENGTH_UNIT
        error = None if value is not None else f"no {k.value} value found in the answer"
        return Answer(k, raw, value, unit if value is not None else None, error=error, static=static)
    except Exception as exc:  # the parser must never take down a caller; report why instead
        return Answer(QuestionKind.FREE, raw, error=f"parse failed: {type(exc).__name__}: {exc}")
