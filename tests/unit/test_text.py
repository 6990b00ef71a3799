import sys
import unicodedata

import pytest

from topicserve.errors import (
    EmptyTextError,
    InvalidInputError,
    TextTypeError,
    TooManyTextsError,
)
from topicserve.text import _IGNORED, CheckedText, normalise, text_hash, validate_text, validate_texts


def test_normalisation_makes_equivalent_texts_one_key() -> None:
    composed = "caf\u00e9  ships\n\tfast "
    decomposed = "  cafe\u0301 ships fast"
    assert normalise(composed) == normalise(decomposed) == "café ships fast"
    assert text_hash(normalise(composed)) == text_hash(normalise(decomposed))


def test_hash_is_stable_sha256() -> None:
    assert text_hash("hello") == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


def test_different_texts_differ() -> None:
    assert text_hash("a b") != text_hash("ab")


@pytest.mark.parametrize("bad", [None, 3, 4.5, b"bytes", ["x"], {"t": 1}])
def test_non_string_is_a_typed_error(bad: object) -> None:
    with pytest.raises(TextTypeError, match="must be a string"):
        validate_text(bad)


@pytest.mark.parametrize("blank", ["", " ", "\n\t  \r\n", "\u200b\ufeff", "\ud800 \x00", "\ue000"])
def test_empty_whitespace_and_invisible_only_are_refused(blank: str) -> None:
    with pytest.raises(EmptyTextError, match="empty or whitespace"):
        validate_text(blank)


def test_long_texts_are_cut_not_refused() -> None:
    assert validate_text("x" * 10, max_chars=10) == CheckedText("x" * 10, cut=False)
    assert validate_text("x" * 11, max_chars=10) == CheckedText("x" * 10, cut=True)
    # the limit counts normalised characters: whitespace runs do not eat it
    assert validate_text("a" + " " * 100 + "b", max_chars=3) == CheckedText("a b", cut=False)


def test_lone_surrogates_and_invisible_characters_are_dropped_so_hashing_never_fails() -> None:
    text = "caf\u00e9\ud800 \x00ships\u200b \udfff\ud83d fast\ufffd"
    checked = validate_text(text)
    assert checked.text == "café ships fast"
    assert len(text_hash(checked.text)) == 64
    checked.text.encode("utf-8")  # no surrogate left


def test_dropped_characters_are_exactly_the_ones_the_tokenizer_ignores() -> None:
    """Cc, Cf, Cs and Co code points (and U+FFFD) go; nothing else does. Unicode versions differ between
    Pythons, so a code point the regex drops may be unassigned here (a Cf of a newer Unicode)."""
    wrong = []
    for cp in range(sys.maxunicode + 1):
        c = chr(cp)
        category = unicodedata.category(c)
        dropped = _IGNORED.fullmatch(c) is not None
        should = category in ("Cc", "Cf", "Cs", "Co") or cp == 0xFFFD
        if dropped != should and not (dropped and category == "Cn"):
            wrong.append(f"U+{cp:04X} {category}")
    assert not wrong, wrong[:20]


def test_validate_texts_reports_the_index_and_limits() -> None:
    with pytest.raises(TextTypeError, match=r"texts\[1\]"):
        validate_texts(["ok", 7])
    with pytest.raises(EmptyTextError, match="empty list"):
        validate_texts([])
    with pytest.raises(TooManyTextsError, match="3 texts"):
        validate_texts(["a", "b", "c"], max_texts=2)
    with pytest.raises(TextTypeError, match="list of strings"):
        validate_texts("not a list")


def test_all_input_errors_share_one_base() -> None:
    for exc in (TextTypeError, EmptyTextError, TooManyTextsError):
        assert issubclass(exc, InvalidInputError)
