import pytest

from topicserve.errors import (
    EmptyTextError,
    InvalidInputError,
    TextTooLongError,
    TextTypeError,
    TooManyTextsError,
)
from topicserve.text import normalise, text_hash, validate_text, validate_texts


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


@pytest.mark.parametrize("blank", ["", " ", "\n\t  \r\n"])
def test_empty_and_whitespace_only_are_refused(blank: str) -> None:
    with pytest.raises(EmptyTextError, match="empty or whitespace"):
        validate_text(blank)


def test_over_limit_is_refused_with_the_numbers() -> None:
    with pytest.raises(TextTooLongError, match="11 characters; the limit is 10"):
        validate_text("x" * 11, max_chars=10)
    assert validate_text("x" * 10, max_chars=10) == "x" * 10


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
    for exc in (TextTypeError, EmptyTextError, TextTooLongError, TooManyTextsError):
        assert issubclass(exc, InvalidInputError)
