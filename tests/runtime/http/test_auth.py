"""API keys: read from a secret file, at least 16 characters, presented as Bearer or X-API-Key."""

from __future__ import annotations

from pathlib import Path

import pytest

from vreyesam.runtime.http.app import ApiKeyError, ApiKeys, presented_key

KEY = "k-0123456789abcdef"


def test_keys_from_a_file_with_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# team a\n\n  {KEY}  \nsecond-key-0123456789\n")
    keys = ApiKeys.from_file(path)
    assert keys.allows(KEY) and keys.allows("second-key-0123456789")
    assert not keys.allows(KEY[:-1]) and not keys.allows(KEY + "x") and not keys.allows("")
    assert not keys.allows(None)


@pytest.mark.parametrize(
    ("content", "message"),
    [("# only a comment\n", "holds no key"), ("short-key\n", "at least 16 characters")],
)
def test_unusable_key_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "keys"
    path.write_text(content)
    with pytest.raises(ApiKeyError, match=message) as refused:
        ApiKeys.from_file(path)
    assert str(path) not in str(refused.value) and "short-key" not in str(refused.value)


def test_missing_key_file_names_no_path(tmp_path: Path) -> None:
    with pytest.raises(ApiKeyError, match="cannot be read") as refused:
        ApiKeys.from_file(tmp_path / "absent")
    assert str(tmp_path) not in str(refused.value)


@pytest.mark.parametrize(
    ("authorization", "x_api_key", "expected"),
    [
        (f"Bearer {KEY}", None, KEY),
        (f"bearer   {KEY} ", None, KEY),
        (None, f" {KEY} ", KEY),
        ("Bearer other-key-0123456789", KEY, KEY),  # X-API-Key wins when both are sent
        (f"Basic {KEY}", None, None),
        (KEY, None, None),
        (None, None, None),
    ],
)
def test_presented_key(authorization: str | None, x_api_key: str | None, expected: str | None) -> None:
    assert presented_key(authorization, x_api_key) == expected
