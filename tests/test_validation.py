"""The id rule: check_image_id and the pattern the API schema states for it agree."""

import re
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from app.errors import InvalidInput
from app.validation import ID_PATTERN, check_image_id

PATTERN = re.compile(ID_PATTERN)
# Text rich in the characters the rule is about, and in plain ones.
ID_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(
            ["a", ".", " ", "/", "\t", "\u200b", "\u202e", "\ufeff", "\ufffd", "\u2028", "\u0301"]
        ),
        # the pattern's dialect names no character above the BMP; no UTF-8 text holds a surrogate
        st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"]),
    ),
    max_size=12,
)


def accepted(image_id: str) -> bool:
    try:
        check_image_id(image_id)
    except InvalidInput:
        return False
    return True


@given(ID_TEXT)
def test_the_schema_pattern_states_the_rule(image_id: str) -> None:
    assert accepted(image_id) == bool(PATTERN.fullmatch(unicodedata.normalize("NFC", image_id)))


def test_examples() -> None:
    for good in ["a", "...", ".a", "a.", "a b", "é", "\U0001f408", "%2F"]:
        assert accepted(good) and PATTERN.fullmatch(good), good
    for bad in ["", ".", "..", " ", " a", "a ", "a/b", "\x00", "\u200b", "\u202etxt", "\ufeff", "x\ufffd"]:
        assert not accepted(bad) and not PATTERN.fullmatch(bad), repr(bad)
    assert check_image_id("e\u0301") == "\u00e9"
