"""Paraphrase templates: several task descriptions, questions and answer phrasings per task group.

Our own wording. Fields in braces are filled by the tasks; every answer template carries `{value}`,
the backticked value text from format.format_value, so the conventions stay in one place.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from spatial_mllm_ros.multispa.errors import UnknownTaskError


@dataclass(frozen=True)
class TemplateSet:
    """Paraphrases of one task group: descriptions, questions and answers with {fields}."""

    descriptions: tuple[str, ...]
    questions: tuple[str, ...]
    answers: tuple[str, ...]


@dataclass(frozen=True)
class Rendered:
    """One drawn paraphrase, filled in."""

    description: str
    question: str
    answer: str


def _answers(*texts: str) -> tuple[str, ...]:
    return _combine(("", "Answer:"), texts)


def _combine(heads: tuple[str, ...], tails: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{h} {t}".strip() for h, t in itertools.product(heads, tails))


_MM = (" mm", " millimetres", " millimeters", "mm")


def _measured(prefixes: tuple[str, ...], units: tuple[str, ...] = _MM[:3]) -> tuple[str, ...]:
    return tuple(f"{p}{{value}}{u}." for p in prefixes for u in units)
_TWO_IMAGES = (
    "Image-1 and Image-2 were taken by the same camera in one scene.",
    "Two photos of the same place are shown, Image-1 first and Image-2 second.",
    "You see two views of one indoor scene, captured one after the other.",
    "The two images come from a single camera moving through a scene.",
    "Both pictures show the same environment from slightly different viewpoints.",
    "Look at the pair of frames: the camera captured Image-1, moved, then captured Image-2.",
    "These are two frames from the same recording.",
    "Compare the two views of this scene.",
    "The first image and the second image share part of the same scene.",
    "Two consecutive snapshots of a static scene are given.",
)
_ONE_IMAGE = (
    "An image of an indoor scene is shown.",
    "Look at the picture.",
    "The image below was captured by an RGB-D camera.",
    "Here is one frame from a camera.",
    "Study this photo of a room.",
    "You are given a single view of a scene.",
    "The following image shows a scene seen from a camera.",
    "Consider this camera image.",
    "This is a snapshot taken by a camera.",
    "An image is provided.",
)
_VIDEO = (
    "Image-1 and Image-2 are two frames of a video; things in the scene may have moved between them.",
    "Two frames from one video clip are shown, the earlier one first.",
    "The frames were recorded at two moments of the same video.",
    "Look at the two video frames, taken some time apart.",
    "These two images come from a recording of a dynamic scene.",
    "A camera filmed the scene; Image-1 is earlier and Image-2 later.",
    "Compare the earlier frame (Image-1) with the later frame (Image-2).",
    "Here are a start frame and an end frame of a short clip.",
    "Between the two frames, objects and the camera may both have moved.",
    "Two snapshots of a scene in motion are given.",
)
_ROBOT = (
    "The images are frames from a robot's camera, the earlier one first.",
    "A robot arm works in front of the camera; Image-1 is before and Image-2 after.",
    "Two frames of a manipulation episode are shown in time order.",
    "The camera watches a robot gripper and some objects over time.",
    "These frames come from a robot workcell camera, earliest first.",
    "Compare the scene before (Image-1) and after (Image-2) the robot acted.",
    "A tabletop scene with a gripper is shown at two moments.",
    "Look at the robot's view at the start and at the end of the motion.",
    "The robot's camera recorded these two frames of one task, in order.",
    "Image-1 shows the workspace before the move, Image-2 after it.",
)

_DEPTH_VALUE_Q = _combine(
    ("", "Please answer:", "Question:"),
    (
        "How far from the camera is {ref}?",
        "What is the depth of {ref}?",
        "Estimate the depth of {ref} in millimetres.",
        "How deep in the scene is {ref}?",
        "What distance along the viewing direction separates the camera from {ref}?",
        "Give the depth value of {ref}.",
        "How many millimetres away from the camera plane is {ref}?",
        "Measure the depth of {ref}.",
        "What is the camera-space depth of {ref}?",
        "Tell me how far {ref} lies from the camera.",
    ),
)
_DEPTH_COMPARE_Q = _combine(
    ("", "Question:"),
    (
        "Which point is {which} the camera, {ref_a} or {ref_b}?",
        "Of {ref_a} and {ref_b}, which one is {which} the camera?",
        "Between {ref_a} and {ref_b}, which lies {which} the viewer?",
        "Is {ref_a} or {ref_b} {which} the camera?",
        "Compare {ref_a} and {ref_b}: which is {which} the camera?",
        "Which of the two points, {ref_a} or {ref_b}, is {which} the camera?",
        "Tell me which is {which} the camera: {ref_a} or {ref_b}.",
        "Looking at {ref_a} and {ref_b}, which one is {which} the camera?",
        "Pick the point {which} the camera: {ref_a} or {ref_b}.",
        "Decide which point is {which} the camera, {ref_a} or {ref_b}.",
    ),
)
_CORR_COORD_Q = _combine(
    ("", "Question:"),
    (
        "Where does {ref} in Image-1 appear in Image-2?",
        "Find the pixel in Image-2 that shows the same 3D point as {ref} in Image-1.",
        "Which location in Image-2 corresponds to {ref} in Image-1?",
        "Locate in Image-2 the point seen as {ref} in Image-1.",
        "{ref} in Image-1 is also visible in Image-2. Where?",
        "Give the coordinates in Image-2 of the scene point shown as {ref} in Image-1.",
        "What are the Image-2 coordinates of {ref} from Image-1?",
        "Match {ref} from Image-1 to its position in Image-2.",
        "Track {ref} of Image-1 into Image-2: where is it?",
        "Where can {ref} of the first image be found in the second image?",
    ),
)
_CORR_CHOICE_Q = _combine(
    ("", "Question:"),
    (
        "Which labelled point in Image-2 is the same as the red dot in Image-1? Options: A, B, C, D.",
        "The red dot in Image-1 marks a point. Which of A, B, C and D marks it in Image-2?",
        "Find the point in Image-2 that matches the dot in Image-1: A, B, C or D?",
        "Which option in Image-2 (A, B, C or D) shows the point marked in Image-1?",
        "Match the marked point of Image-1 to one of the labelled points A-D in Image-2.",
        "Which letter in Image-2 lies on the same scene point as the red dot in Image-1?",
        "The dot in the first image corresponds to which labelled dot (A, B, C, D) in the second?",
        "Choose A, B, C or D: which point in Image-2 is the red dot of Image-1?",
    ),
)
_CAMERA_DIR_Q = {
    "x": (
        "Did the camera move left or right from Image-1 to Image-2?",
        "Going from the first to the second image, was the camera shifted to the left or to the right?",
        "Relative to its own view in Image-1, did the camera translate left or right?",
        "Which way did the camera slide sideways between the two images, left or right?",
        "Between Image-1 and Image-2, did the camera's position move left or right?",
        "Was Image-2 taken from a position to the left or to the right of Image-1's camera?",
        "In which horizontal direction (left or right) did the camera travel?",
        "Did the viewpoint shift leftward or rightward from Image-1 to Image-2?",
        "Consider the camera's sideways motion from the first frame to the second: left or right?",
        "Left or right: where did the camera move between the frames?",
    ),
    "y": (
        "Did the camera move up or down from Image-1 to Image-2?",
        "Going from the first to the second image, was the camera raised or lowered (up or down)?",
        "Relative to its own view in Image-1, did the camera translate up or down?",
        "Which way did the camera move vertically between the two images, up or down?",
        "Between Image-1 and Image-2, did the camera's position move up or down?",
        "Was Image-2 taken from a position above (up) or below (down) Image-1's camera?",
        "In which vertical direction (up or down) did the camera travel?",
        "Did the viewpoint shift upward or downward from Image-1 to Image-2?",
        "Consider the camera's vertical motion from the first frame to the second: up or down?",
        "Up or down: where did the camera move between the frames?",
    ),
    "z": (
        "Did the camera move forward or backward from Image-1 to Image-2?",
        "Going from the first to the second image, did the camera advance (forward) or retreat (backward)?",
        "Relative to where it looked in Image-1, did the camera translate forward or backward?",
        "Which way did the camera move along its viewing direction, forward or backward?",
        "Between Image-1 and Image-2, did the camera get closer to the scene (forward) or back off?",
        "Was Image-2 taken from further forward or further backward than Image-1?",
        "Along the optical axis, did the camera travel forward or backward?",
        "Did the viewpoint move in or out (forward or backward) from Image-1 to Image-2?",
        "Consider the camera's motion along its view direction: forward or backward?",
        "Forward or backward: where did the camera move between the frames?",
    ),
    "yaw": (
        "Did the camera turn left or right from Image-1 to Image-2?",
        "Going from the first image to the second, did the camera pan to the left or to the right?",
        "Which way did the camera rotate horizontally, left or right?",
        "Between the two views, did the camera's heading swing left or right?",
        "Was the camera yawed to the left or to the right to take Image-2?",
        "Did the camera look more to the left or more to the right in Image-2 than in Image-1?",
        "In which direction did the camera pan between the frames?",
        "Left or right: how did the camera's viewing direction turn?",
        "Did the camera rotate leftward or rightward from Image-1 to Image-2?",
        "Consider the camera's heading: did it turn left or right?",
    ),
    "pitch": (
        "Did the camera tilt up or down from Image-1 to Image-2?",
        "Going from the first image to the second, did the camera look more upward or more downward?",
        "Which way did the camera pitch, up or down?",
        "Between the two views, did the camera's gaze tilt up or down?",
        "Was the camera tilted up or down to take Image-2?",
        "Did the camera point higher (up) or lower (down) in Image-2 than in Image-1?",
        "In which direction did the camera tilt between the frames?",
        "Up or down: how did the camera's viewing direction change?",
        "Did the camera rotate upward or downward from Image-1 to Image-2?",
        "Consider the camera's elevation: did it tilt up or down?",
    ),
}
_CAMERA_DIR_A = {
    "x": _answers(
        "The camera moved {value}.", "{value}", "It shifted {value}.", "The camera translated {value}.",
        "Toward the {value}.", "The viewpoint moved {value}."),
    "y": _answers(
        "The camera moved {value}.", "{value}", "It shifted {value}.", "The camera translated {value}.",
        "The viewpoint went {value}.", "Vertically, {value}."),
    "z": _answers(
        "The camera moved {value}.", "{value}", "It went {value}.", "The camera translated {value}.",
        "The viewpoint moved {value}.", "Along its view axis it moved {value}."),
    "yaw": _answers(
        "The camera turned {value}.", "{value}", "It panned {value}.", "The heading swung {value}.",
        "The camera rotated {value}.", "It yawed {value}."),
    "pitch": _answers(
        "The camera tilted {value}.", "{value}", "It pitched {value}.", "The view tilted {value}.",
        "The camera rotated {value}.", "Its gaze moved {value}."),
}

_TEMPLATES: dict[str, TemplateSet] = {
    "depth_value": TemplateSet(
        _ONE_IMAGE,
        _DEPTH_VALUE_Q,
        _measured(("", "The depth is ", "It is ", "About ", "Depth: ")),
    ),
    "depth_compare": TemplateSet(
        _ONE_IMAGE,
        _DEPTH_COMPARE_Q,
        _answers("{value}", "Point {value} is {which} the camera.", "{value} is {which} it.",
         "The answer is {value}.", "It is point {value}.", "{value} lies {which} the camera."),
    ),
    "correspondence_coord": TemplateSet(
        _TWO_IMAGES,
        _CORR_COORD_Q,
        _answers("{value}", "In Image-2 it is at {value}.", "It appears at {value}.",
         "The matching point is {value}.", "Image-2 shows it at {value}.",
         "Its position in the second image is {value}."),
    ),
    "correspondence_choice": TemplateSet(
        _TWO_IMAGES,
        _CORR_CHOICE_Q,
        _answers("{value}", "Point {value}.", "It is {value}.", "The match is {value}.", "Option {value}.",
         "The red dot corresponds to {value}."),
    ),
    "camera_distance": TemplateSet(
        _TWO_IMAGES,
        _combine(("", "Question:"), (
            "How far did the camera move between Image-1 and Image-2?",
            "What distance did the camera travel from the first image to the second?",
            "By how many millimetres was the camera displaced?",
            "Estimate the camera's translation distance between the two views.",
            "How large was the camera's movement between the frames?",
            "Measure how far the camera's position changed.",
            "What is the straight-line distance between the two camera positions?",
            "How much did the camera's position shift from Image-1 to Image-2?",
            "Give the length of the camera's displacement.",
            "How many millimetres apart were the two camera centres?",
        )),
        _measured(("", "The camera moved ", "About ", "It travelled ")),
    ),
    "camera_vector": TemplateSet(
        _TWO_IMAGES,
        _combine(("", "Question:"), (
            "What was the camera's displacement vector from Image-1 to Image-2, in Image-1's camera frame?",
            "Give the camera translation [ x , y , z ] in millimetres, expressed in the first camera's axes.",
            "How did the camera move in x (right), y (down) and z (forward) of Image-1's frame?",
            "Estimate the camera's movement as a 3D vector in the first view's coordinates.",
            "In the first camera's frame, what vector leads from it to the second camera position?",
            "Describe the camera motion as [ x , y , z ] millimetres in Image-1's camera axes.",
            "What translation vector takes the first camera to the second, in camera-1 coordinates?",
            "Give the camera's 3D displacement between the frames (x right, y down, z forward).",
        )),
        _answers(
            "{value}", "The camera moved by {value} mm.", "Displacement: {value} mm.", "It moved {value} mm.",
            "The translation vector is {value} mm.", "{value} millimetres."),
    ),
    "camera_yaw_angle": TemplateSet(
        _TWO_IMAGES,
        _combine(("", "Question:"), (
            "By how many degrees did the camera turn left or right between Image-1 and Image-2?",
            "How large was the camera's horizontal rotation (pan) between the frames?",
            "What is the change of the camera's heading, in degrees?",
            "How many degrees did the camera pan from the first view to the second?",
            "Estimate the yaw rotation of the camera between the two images.",
            "How far did the camera swing horizontally, in degrees?",
            "Measure the panning angle between Image-1 and Image-2.",
            "What angle did the camera's heading change by?",
        )),
        _measured(("", "The camera turned ", "About ", "It panned by "), (" degrees", "°", " deg")),
    ),
    "camera_pitch_angle": TemplateSet(
        _TWO_IMAGES,
        _combine(("", "Question:"), (
            "By how many degrees did the camera tilt up or down between Image-1 and Image-2?",
            "How large was the camera's vertical rotation (tilt) between the frames?",
            "What is the change of the camera's elevation angle, in degrees?",
            "How many degrees did the camera tilt from the first view to the second?",
            "Estimate the pitch rotation of the camera between the two images.",
            "How far did the camera's gaze tilt, in degrees?",
            "Measure the tilt angle between Image-1 and Image-2.",
            "What angle did the camera's elevation change by?",
        )),
        _measured(("", "The camera tilted ", "About ", "It pitched by "), (" degrees", "°", " deg")),
    ),
    "object_distance": TemplateSet(
        _VIDEO,
        _combine(("", "Question:"), (
            "How far did {ref} move in the world between Image-1 and Image-2?",
            "What distance did {ref} in Image-1 travel by the time of Image-2?",
            "By how many millimetres was {ref} of Image-1 displaced?",
            "Estimate how far {ref} in Image-1 moved, ignoring camera motion.",
            "How much did the 3D point under {ref} in Image-1 move by the time of Image-2?",
            "Measure the world-space displacement of {ref} (Image-1) between the frames.",
            "Ignoring the camera's own motion, how far did {ref} in Image-1 move?",
            "What is the length of the motion of {ref} of Image-1?",
        )),
        _measured(("", "The point moved ", "About ", "It travelled ")),
    ),
    "object_vector": TemplateSet(
        _VIDEO,
        _combine(("", "Question:"), (
            "What was the displacement of {ref} in Image-1, as a vector in Image-1's camera frame?",
            "How did {ref} of Image-1 move, in [ x , y , z ] millimetres of the first camera?",
            "Give the 3D motion vector of {ref} in Image-1 (x right, y down, z forward).",
            "Describe, in the first camera's axes, how {ref} in Image-1 moved.",
            "Estimate the movement vector of {ref} (Image-1) between the frames, in camera-1 coordinates.",
            "In millimetres along Image-1's camera axes, how was {ref} displaced?",
            "What vector takes {ref} of Image-1 to its position at Image-2's time?",
            "Ignoring the camera's own motion, give the displacement of {ref} in Image-1 as [ x , y , z ].",
        )),
        _answers(
            "{value}", "The point moved by {value} mm.", "Displacement: {value} mm.", "It moved {value} mm.",
            "Its motion vector is {value} mm.", "{value} millimetres."),
    ),
    "object_size": TemplateSet(
        _TWO_IMAGES,
        _combine(("", "Question:"), (
            "What is the {dimension} of the {object}?",
            "How {adjective} is the {object} shown in the images?",
            "Estimate the {dimension} of the {object} in millimetres.",
            "Using all the images, measure the {object}'s {dimension}.",
            "Give the real-world {dimension} of the {object}.",
            "How many millimetres is the {object}'s {dimension}?",
            "From these views, what {dimension} does the {object} have?",
            "Tell me the {dimension} of the {object} visible in the images.",
            "What is the {object}'s {dimension}, in millimetres?",
            "Measure the {object}: what is its {dimension}?",
        )),
        _measured(("", "Its {dimension} is ", "The {object} is ", "About ")),
    ),
    "robot_direction": TemplateSet(
        _ROBOT,
        _combine(("", "Question:"), (
            "In which direction did {subject} move, as seen by the camera?",
            "Which way did {subject} go between Image-1 and Image-2?",
            "From the camera's point of view, where did {subject} move?",
            "Did {subject} move left, right, up, down, forward or backward?",
            "Describe the main direction of {subject}'s motion in the camera view.",
            "Where did {subject} travel from the first frame to the second?",
            "What was the dominant direction of motion of {subject}?",
            "Relative to the camera, in what direction was {subject} moved?",
        )),
        _answers("{value}", "{Subject} moved {value}.", "It went {value}.", "Mostly {value}.",
         "The motion was {value}.", "{Subject} was moved {value}."),
    ),
    "robot_yes_no": TemplateSet(
        _ROBOT,
        _combine(("", "Question:"), (
            "Did {subject} move {direction}?",
            "Was {subject} moved {direction} between Image-1 and Image-2?",
            "Between the frames, did {subject} go {direction}?",
            "Is it true that {subject} moved {direction}, as seen by the camera?",
            "From the camera's view, did {subject} travel {direction}?",
            "Did {subject} shift {direction} from the first frame to the second?",
            "Has {subject} moved {direction}?",
            "Looking at both frames, did {subject} move {direction}?",
        )),
        _answers(
            "{value}", "{value}.", "The answer is {value}.", "{value}, as the frames show.",
            "I'd say {value}.", "{value} - judging from the two frames."),
    ),
    "robot_distance": TemplateSet(
        _ROBOT,
        _combine(("", "Question:"), (
            "How far did {subject} move between Image-1 and Image-2?",
            "What distance did {subject} travel from the first frame to the second?",
            "By how many millimetres was {subject} displaced?",
            "Estimate how far {subject} moved.",
            "How much did {subject} move during the episode?",
            "Measure the displacement of {subject} between the frames.",
            "How long was {subject}'s movement, in millimetres?",
            "Give the distance {subject} was moved.",
        )),
        _measured(("", "{Subject} moved ", "About ", "It travelled ")),
    ),
}
for _axis in ("x", "y", "z", "yaw", "pitch"):
    _TEMPLATES[f"camera_dir_{_axis}"] = TemplateSet(
        _TWO_IMAGES, _combine(("", "Question:"), _CAMERA_DIR_Q[_axis]), _CAMERA_DIR_A[_axis]
    )

# The static answer of movement tasks (format.DID_NOT_MOVE is the canonical sentence); {value} = zero.
STATIC_ANSWERS: tuple[str, ...] = (
    "{static} {value}",
    "{static} Its displacement is {value}.",
    "{static} The motion is {value}.",
)

REF_DOT: tuple[str, ...] = ("the red dot", "the point marked in red", "the marked point", "the dotted point",
                            "the point under the red marker")
REF_LETTER: tuple[str, ...] = ("point {letter}", "the point labelled {letter}", "{letter}",
                               "the dot {letter}")
REF_COORD: tuple[str, ...] = ("the point at {coords}", "the pixel {coords}", "the location {coords}",
                              "the position {coords}", "{coords}")
REF_LETTER_COORD: tuple[str, ...] = ("point {letter} at {coords}", "{letter} {coords}",
                                     "{letter} (at {coords})")


def template_set(group: str) -> TemplateSet:
    """Return the paraphrases of one task group."""
    try:
        return _TEMPLATES[group]
    except KeyError:
        raise UnknownTaskError(group, tuple(sorted(_TEMPLATES))) from None


def template_groups() -> tuple[str, ...]:
    """Names of all template groups."""
    return tuple(sorted(_TEMPLATES))


def upper_first(text: str) -> str:
    """Upper-case the first letter only (str.capitalize would also lower "Image-1" and "A")."""
    return text[:1].upper() + text[1:]


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _fill(text: str, fields: dict[str, str]) -> str:
    return upper_first(text.format(**fields))


def render(group: str, rng: np.random.Generator, value: str, answer: str | None = None,
           **fields: str) -> Rendered:
    """Draw a description, question and answer of a group, filled with fields and the value text.

    `answer` (a template with {value}) overrides the drawn answer phrasing, e.g. for static answers.
    """
    tpl = template_set(group)
    fields = dict(fields)
    if "subject" in fields:
        fields.setdefault("Subject", upper_first(fields["subject"]))
    fields["value"] = value
    desc = _fill(_pick(rng, tpl.descriptions), fields)
    question = _fill(_pick(rng, tpl.questions), fields)
    ans = _fill(answer if answer is not None else _pick(rng, tpl.answers), fields)
    return Rendered(desc, question, ans)


def point_ref(rng: np.random.Generator, marker: str, coords: str = "", letter: str = "") -> str:
    """How a question names a point: a drawn dot (optionally lettered) or normalised coordinates."""
    if marker == "dot":
        return _pick(rng, REF_LETTER if letter else REF_DOT).format(letter=letter)
    return _pick(rng, REF_LETTER_COORD if letter else REF_COORD).format(letter=letter, coords=coords)


def static_answer(rng: np.random.Generator, static: str) -> str:
    """Pick an answer template for "did not move", with {value} left for the zero value."""
    return _pick(rng, STATIC_ANSWERS).replace("{static}", static)
