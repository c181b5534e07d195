"""Repeated JSON keys: the quick check knows every key a body type may hold (a tagged union's tag
too), gives up on types whose keys it cannot know, and the full check names where a key repeats.
"""

from __future__ import annotations

import msgspec
import pytest

from shared.web.http import ProblemError, _key_pattern, refuse_duplicate_keys


class Photo(msgspec.Struct, tag=True):
    url: str


class Note(msgspec.Struct, tag=True, rename={"text": "body"}):
    text: str


class Post(msgspec.Struct):
    items: list[Photo | Note]


class Labelled(msgspec.Struct):
    labels: dict[str, str]


def test_the_quick_check_knows_every_key_including_tags_and_renamed_fields() -> None:
    keys = _key_pattern(Post)
    assert keys is not None
    body = b'{"items": [{"type": "Photo", "url": "u"}, {"type": "Note", "body": "b"}]}'
    assert keys.pattern == b'(?:"body"|"items"|"type"|"url")'
    assert sorted(keys.findall(body)) == [b'"body"', b'"items"', b'"type"', b'"type"', b'"url"']  # "type" twice: check


def test_a_type_with_keys_of_its_callers_choosing_is_always_checked() -> None:
    assert _key_pattern(Labelled) is None


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        (b'{"a": 1, "a": 2}', "/a"),
        (b'{"a": {"b": [1, {"c": 1}, {"c": 1, "d": 2, "c": 3}]}}', "/a/b/2/c"),
        (b'[[{"x": 1}], [{"y": 1, "y": 1}]]', "/1/0/y"),
        (b'{"a/b~c": 1, "a/b~c": 2}', "/a~1b~0c"),
        (b'{"\\u0061": 1, "a": 2}', "/a"),
    ],
)
def test_the_full_check_names_the_repeated_key_by_json_pointer(body: bytes, pointer: str) -> None:
    with pytest.raises(ProblemError) as refused:
        refuse_duplicate_keys(body)
    assert (refused.value.status, refused.value.errors[0]["pointer"]) == (422, pointer)


@pytest.mark.parametrize("body", [b'{"a": 1, "b": {"a": 2}}', b'[{"a": 1}, {"a": 2}]', b'{"a": 1', b"[" * 100_000])
def test_keys_in_different_objects_and_bodies_that_are_not_json_pass_the_check(body: bytes) -> None:
    refuse_duplicate_keys(body)  # malformed JSON is the decoder's to refuse, with its own message
