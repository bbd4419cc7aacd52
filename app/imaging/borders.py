"""Uniform borders (letterbox, pillarbox, frames, padding) found on a grey image, so that a
bordered copy hashes like the picture inside it. Pure functions."""

import numpy as np
from PIL import Image

# A pixel belongs to a border when it is within this many grey levels of the border's colour
# (the median of the image's outermost line): JPEG noise on a flat bar stays within a few levels.
BORDER_TOLERANCE = 3
# ... and a line is border when at most this share of its pixels is not (a logo or text on a frame).
BORDER_STRAY_SHARE = 0.03
# ... and a border ends at an edge: the picture beside it is this far from its colour on average.
EDGE_CONTRAST = 16
# Never trim more than this share of either side: what is left must still be the picture.
MAX_TRIM_SHARE = 0.6
SEARCH_SIDE = 128  # the shorter side borders are looked for at (content_box)
_MAX_PASSES = 8  # frames within frames; each pass trims one
_STEP = 16  # lines examined at a time: most images have no border, and stop at the first block


def content_box(grey: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), the slice bounds of `grey` (rows x cols, uint8) without its
    uniform borders; the whole image when trimming would leave too little (a flat image).

    Borders are looked for on the image shrunk to a shorter side of SEARCH_SIDE (box filter):
    grain and JPEG noise average out as much on a large copy as on a small one, so that every
    copy of a picture loses the same borders whatever its size.
    """
    height, width = grey.shape
    scale = min(height, width) / SEARCH_SIDE
    if scale <= 1:
        return _content_box(grey)
    small = Image.fromarray(grey).resize((round(width / scale), round(height / scale)), Image.Resampling.BOX)
    top, bottom, left, right = _content_box(np.asarray(small))
    to_rows, to_cols = height / small.height, width / small.width
    return round(top * to_rows), round(bottom * to_rows), round(left * to_cols), round(right * to_cols)


def _content_box(grey: np.ndarray) -> tuple[int, int, int, int]:
    """content_box at the size given. Trimmed again until nothing more comes off, so that a frame
    around a picture whose own edge is flat (a dark foreground, a studio backdrop) comes off with
    that edge, as it does from the picture alone: both hash alike."""
    height, width = grey.shape
    top, bottom, left, right = 0, height, 0, width
    for _ in range(_MAX_PASSES):
        inner = grey[top:bottom, left:right]
        rows = _border_lines(inner), len(inner) - _border_lines(inner[::-1])
        cols = _border_lines(inner.T), len(inner.T) - _border_lines(inner.T[::-1])
        box = (top, bottom, left, right)
        if rows[1] - rows[0] >= max(1, height * (1 - MAX_TRIM_SHARE)):
            top, bottom = top + rows[0], top + rows[1]
        if cols[1] - cols[0] >= max(1, width * (1 - MAX_TRIM_SHARE)):
            left, right = left + cols[0], left + cols[1]
        if (top, bottom, left, right) == box:
            break
    return top, bottom, left, right


def _border_lines(lines: np.ndarray) -> int:
    """How many of the leading rows of `lines` are border: rows that keep to the colour of the
    first within BORDER_TOLERANCE (all but BORDER_STRAY_SHARE of their pixels), and end at an
    edge (the next two rows differ from that colour by EDGE_CONTRAST on average). Without the
    edge it is flat picture, such as a sky brightened until it clipped to white: a brighter copy
    would lose a different share of it."""
    colour = int(np.median(lines[0]))
    limit = len(lines)
    for start in range(0, limit, _STEP):
        block = lines[start : start + _STEP].astype(np.int16)
        stray = (np.abs(block - colour) > BORDER_TOLERANCE).mean(axis=1) > BORDER_STRAY_SHARE
        if stray.any():
            end = start + int(np.argmax(stray))
            after = np.abs(lines[end : end + 2].astype(np.int16) - colour).mean(axis=1)
            return end if end > 0 and after.max() >= EDGE_CONTRAST else 0
    return limit
