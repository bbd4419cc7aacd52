"""A progressive JPEG cut down to what a 1/8-scale decode reads: its DC coefficients.

At 1/8 scale libjpeg computes each output pixel from the DC coefficient of its 8x8 block alone
(jpeg_idct_1x1), yet it still Huffman-decodes every AC scan of a progressive file first: most of
the bytes and 75-90% of the decode time on the photos in ../shared/images/large. So the file is
rewritten with its DC scans only, plus one empty AC scan per component (every block ends at once).
The empty scans matter: when AC coefficients are missing, libjpeg-turbo smooths the blocks and
moves the DC values of the preview; once they are known (as zeros) it does not. The 1/8-scale
decode of the result is the same, pixel for pixel, as that of the whole file.

Pure bytes in, bytes out. Anything not understood returns None and the caller decodes the file
as it is: baseline or arithmetic-coded JPEGs, restart intervals, 12-bit samples, a missing
end-of-image marker (a truncated file must still fail to decode).
"""

import re
from dataclasses import dataclass

_SOI = b"\xff\xd8"
_EOI = b"\xff\xd9"
_SOF_PROGRESSIVE_HUFFMAN = 0xC2
_OTHER_SOF = {0xC0, 0xC1, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_SOS, _DRI, _EOI_MARKER = 0xDA, 0xDD, 0xD9
# Markers that carry no length; outside a scan they mean a layout this module does not handle.
_STANDALONE = {0x01, 0xD8, *range(0xD0, 0xD8)}
# Entropy-coded data ends at the next marker: 0xFF followed by neither a stuffed 0x00 nor RSTn.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")
_EMPTY_AC_TABLE = 0  # the Huffman table slot the empty scans use (theirs come after every other scan)
_MAX_EOB_RUN = 32767  # EOB14 with 14 extra bits: the longest end-of-band run one symbol codes


@dataclass(frozen=True, slots=True)
class _Frame:
    width: int
    height: int
    components: tuple[tuple[int, int, int], ...]  # (id, horizontal sampling, vertical sampling)

    def blocks(self, h_sampling: int, v_sampling: int) -> int:
        """8x8 blocks of one component in a single-component scan (libjpeg's width_in_blocks x
        height_in_blocks)."""
        h_max = max(c[1] for c in self.components)
        v_max = max(c[2] for c in self.components)
        across = -(-self.width * h_sampling // (h_max * 8))
        down = -(-self.height * v_sampling // (v_max * 8))
        return across * down


def dc_scans_only(data: bytes) -> bytes | None:
    """`data` with its AC scans replaced by empty ones, or None (see the module docstring)."""
    if not data.startswith(_SOI):
        return None
    kept: list[bytes] = []
    frame: _Frame | None = None
    pos = len(_SOI)
    while True:
        if pos + 2 > len(data) or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == _EOI_MARKER:
            break
        if marker in _STANDALONE or marker in _OTHER_SOF or pos + 4 > len(data):
            return None
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        body = data[pos + 4 : end]
        if end > len(data) or (marker == _DRI and body != b"\x00\x00"):
            return None
        if marker == _SOF_PROGRESSIVE_HUFFMAN:
            frame = _parse_frame(body)
            if frame is None:
                return None
        if marker == _SOS:
            scan_end = _NEXT_MARKER.search(data, end)
            if scan_end is None:
                return None
            if _is_dc_scan(body):
                kept.append(data[pos : scan_end.start()])
            pos = scan_end.start()
            continue
        kept.append(data[pos:end])
        pos = end
    if frame is None:
        return None
    return _SOI + b"".join(kept) + _empty_ac_scans(frame) + _EOI


def _parse_frame(body: bytes) -> _Frame | None:
    if len(body) < 6 or body[0] != 8:  # 8-bit samples only
        return None
    count = body[5]
    if count == 0 or len(body) != 6 + 3 * count:
        return None
    components = tuple((body[6 + 3 * i], body[7 + 3 * i] >> 4, body[7 + 3 * i] & 15) for i in range(count))
    frame = _Frame(
        width=int.from_bytes(body[3:5], "big"), height=int.from_bytes(body[1:3], "big"), components=components
    )
    if frame.width == 0 or frame.height == 0 or any(h == 0 or v == 0 for _, h, v in components):
        return None
    return frame


def _is_dc_scan(body: bytes) -> bool:
    """A scan whose spectral selection starts at coefficient 0 (DC first or DC refinement)."""
    count = body[0] if body else 0
    return len(body) == 1 + 2 * count + 3 and body[1 + 2 * count] == 0


def _empty_ac_scans(frame: _Frame) -> bytes:
    """A Huffman table of end-of-band runs, then for each component one first AC scan of
    coefficients 1-63 at full precision in which every block is an end-of-band."""
    symbols = bytes(r << 4 for r in range(15))  # EOBr: a run of 2**r blocks plus r extra bits
    lengths = bytes([0, 0, 0, len(symbols)] + [0] * 12)  # all 4-bit codes: symbol r gets code r
    table = _segment(0xC4, bytes([0x10 | _EMPTY_AC_TABLE]) + lengths + symbols)
    scans = []
    for component_id, h_sampling, v_sampling in frame.components:
        header = bytes([1, component_id, _EMPTY_AC_TABLE, 1, 63, 0])  # Ss=1, Se=63, Ah=Al=0
        scans.append(_segment(_SOS, header) + _end_of_band_runs(frame.blocks(h_sampling, v_sampling)))
    return table + b"".join(scans)


def _end_of_band_runs(blocks: int) -> bytes:
    """Entropy-coded data marking `blocks` blocks as ending at once, with the table above."""
    bits = []
    while blocks:
        run = min(blocks, _MAX_EOB_RUN)
        r = run.bit_length() - 1
        bits.append(format(r, "04b") + (format(run - (1 << r), f"0{r}b") if r else ""))
        blocks -= run
    text = "".join(bits)
    text += "1" * (-len(text) % 8)  # pad the last byte with 1-bits, as the standard says
    coded = int(text, 2).to_bytes(len(text) // 8, "big")
    return coded.replace(b"\xff", b"\xff\x00")  # byte stuffing


def _segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body
