"""Uniform borders (letterbox, pillarbox, frames, padding) found on a grey image, so that a
bordered copy hashes like the picture inside it; and three more guesses of where the picture lies,
stored and searched beside it (padding the colour of its edge, a screenshot's bars and buttons, an
overlay in a corner of the border). Pure functions."""

from typing import NamedTuple

import numpy as np
from PIL import Image

# A pixel belongs to a border when it is within this many grey levels of the border's colour
# (the median of the image's outermost line): JPEG noise on a flat bar stays within a few levels.
BORDER_TOLERANCE = 3
# ... and a line is border when at most this share of its pixels is not (a logo or text on a frame).
BORDER_STRAY_SHARE = 0.03
# ... or, for the `cornered` cut, when what strays lies within this share of one end of the line:
# an overlay in a corner of the border covers less (the evaluation's caption bar 32% of a side, its
# channel logo about 25%).
CORNER_SHARE = 0.4
# ... and a border ends at an edge: the picture beside it is this far from its colour on average.
EDGE_CONTRAST = 16
# Never trim more than this share of either side: what is left must still be the picture. A phone
# picture (9:16) in a 16:9 video frame is 32% of its width.
MAX_TRIM_SHARE = 0.75
SEARCH_SIDE = 128  # the shorter side borders are looked for at (content_box)
_MAX_PASSES = 8  # frames within frames; each pass trims one
_STEP = 16  # lines examined at a time: most images have no border, and stop at the first block
Box = tuple[int, int, int, int]  # (top, bottom, left, right): slice bounds of a grey image


class Cuts(NamedTuple):
    """Where the picture of a grey image may lie (slice bounds): `trimmed`, without its uniform
    borders (what is stored); and three more guesses a search tries as well, each the same box
    where nothing tells them apart. `unpadded`: also without every flat margin, whether or not it
    ends at an edge (a pale sky padded with white). `inset`: the longest run of lines that are not
    uniform, both ways (a picture in a screenshot, set apart from its app bars, buttons and caption
    by uniform lines). `cornered`: the border trim letting through an overlay in a corner of the
    border (CORNER_SHARE): a caption bar over the white margin of a cut-out stops the trim of the
    two sides it lies on, so its copy would keep a margin its original loses."""

    trimmed: Box
    unpadded: Box
    inset: Box
    cornered: Box


def content_box(grey: np.ndarray) -> Box:
    """The slice bounds of `grey` (rows x cols, uint8) without its uniform borders; the whole
    image when trimming would leave too little (a flat image)."""
    return content_cuts(grey).trimmed


def content_cuts(grey: np.ndarray) -> Cuts:
    """The Cuts of `grey`.

    Borders are looked for on the image shrunk to a shorter side of SEARCH_SIDE (box filter):
    grain and JPEG noise average out as much on a large copy as on a small one, so that every
    copy of a picture loses the same borders whatever its size.
    """
    height, width = grey.shape
    scale = min(height, width) / SEARCH_SIDE
    if scale <= 1:
        return _cuts(grey)
    small = Image.fromarray(grey).resize((round(width / scale), round(height / scale)), Image.Resampling.BOX)
    to_rows, to_cols = height / small.height, width / small.width

    def scaled(box: Box) -> Box:
        top, bottom, left, right = box
        return round(top * to_rows), round(bottom * to_rows), round(left * to_cols), round(right * to_cols)

    return Cuts(*(scaled(box) for box in _cuts(np.asarray(small))))


def _cuts(grey: np.ndarray) -> Cuts:
    """content_cuts at the size given. The border trim is repeated until nothing more comes off,
    so that a frame around a picture whose own edge is flat (a dark foreground, a studio backdrop)
    comes off with that edge, as it does from the picture alone: both hash alike. The margins
    without an edge come off in one more pass: more passes would each eat a few lines of a
    gradient."""
    box = _trimmed_repeatedly(grey, corner_share=0)
    return Cuts(
        box,
        _trimmed(grey, box, edge=False, corner_share=0),
        _inset(grey),
        _trimmed_repeatedly(grey, corner_share=CORNER_SHARE),
    )


def _trimmed_repeatedly(grey: np.ndarray, *, corner_share: float) -> Box:
    box = (0, grey.shape[0], 0, grey.shape[1])
    for _ in range(_MAX_PASSES):
        trimmed = _trimmed(grey, box, edge=True, corner_share=corner_share)
        if trimmed == box:
            break
        box = trimmed
    return box


def _inset(grey: np.ndarray) -> Box:
    """The longest run of rows that are not uniform (every pixel within BORDER_TOLERANCE of the
    row's median), then within it the longest run of such columns; the whole image where either
    would leave too little."""
    height, width = grey.shape
    top, bottom = _longest_run(~_uniform(grey))
    if bottom - top < max(1, height * (1 - MAX_TRIM_SHARE)):
        return 0, height, 0, width
    left, right = _longest_run(~_uniform(grey[top:bottom].T))
    if right - left < max(1, width * (1 - MAX_TRIM_SHARE)):
        left, right = 0, width
    return top, bottom, left, right


def _uniform(lines: np.ndarray) -> np.ndarray:
    median = np.median(lines, axis=1, keepdims=True)
    deviation: np.ndarray = np.abs(lines.astype(np.int16) - median).max(axis=1)
    return deviation <= BORDER_TOLERANCE


def _longest_run(flags: np.ndarray) -> tuple[int, int]:
    """The slice bounds of the longest run of True in `flags` (the first of equal ones)."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flags.astype(np.int8), [0]))))
    if not len(edges):
        return 0, 0
    starts, ends = edges[::2], edges[1::2]
    longest = int(np.argmax(ends - starts))
    return int(starts[longest]), int(ends[longest])


def _trimmed(grey: np.ndarray, box: Box, *, edge: bool, corner_share: float) -> Box:
    """`box` less the borders along its sides, each pair of opposite sides only if enough is left."""
    height, width = grey.shape
    top, bottom, left, right = box
    inner = grey[top:bottom, left:right]
    rows = (
        _border_lines(inner, edge, corner_share),
        len(inner) - _border_lines(inner[::-1], edge, corner_share),
    )
    cols = (
        _border_lines(inner.T, edge, corner_share),
        len(inner.T) - _border_lines(inner.T[::-1], edge, corner_share),
    )
    if rows[1] - rows[0] >= max(1, height * (1 - MAX_TRIM_SHARE)):
        top, bottom = top + rows[0], top + rows[1]
    if cols[1] - cols[0] >= max(1, width * (1 - MAX_TRIM_SHARE)):
        left, right = left + cols[0], left + cols[1]
    return top, bottom, left, right


def _border_lines(lines: np.ndarray, edge: bool, corner_share: float) -> int:
    """How many of the leading rows of `lines` are border: rows that keep to the colour of the
    first within BORDER_TOLERANCE (all but BORDER_STRAY_SHARE of their pixels; with
    `corner_share`, or of those past that share of one end: what strays is in a corner), and
    (`edge`) end at an edge (the next two rows differ from that colour by EDGE_CONTRAST on
    average). Without the edge it may be flat picture, such as a sky brightened until it clipped
    to white: a brighter copy would lose a different share of it."""
    colour = int(np.median(lines[0]))
    limit = len(lines)
    corner = int(corner_share * lines.shape[1])  # 0: the plain rule (no corner, or too short a line)
    for start in range(0, limit, _STEP):
        off = np.abs(lines[start : start + _STEP].astype(np.int16) - colour) > BORDER_TOLERANCE
        stray = off.mean(axis=1) > BORDER_STRAY_SHARE
        if corner:
            stray &= (off[:, corner:].mean(axis=1) > BORDER_STRAY_SHARE) & (
                off[:, :-corner].mean(axis=1) > BORDER_STRAY_SHARE
            )
        if stray.any():
            end = start + int(np.argmax(stray))
            after = np.abs(lines[end : end + 2].astype(np.int16) - colour).mean(axis=1)
            return end if end > 0 and (not edge or after.max() >= EDGE_CONTRAST) else 0
    return limit
