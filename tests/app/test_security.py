"""API tokens: only hashes are stored; verification and revocation."""

import pytest
from sqlmodel import select

from app.models import ApiToken
from app.security import (
    CLOSED_MARKER,
    LastToken,
    create_token,
    has_tokens,
    hash_token,
    list_tokens,
    revoke_token,
    verify_token,
    writes_closed,
)


def test_token_is_stored_as_a_hash_only(session):
    assert not has_tokens(session=session)
    token = create_token(session=session, name="ci")
    (row,) = session.exec(select(ApiToken)).all()
    assert row.name == "ci" and row.token_hash == hash_token(token) and token not in row.token_hash
    assert has_tokens(session=session) and [t.name for t in list_tokens(session=session)] == ["ci"]
    assert create_token(session=session, name="ci") != token  # every token is new


def test_verify_and_revoke(session):
    token = create_token(session=session, name="ci")
    assert verify_token(session=session, token="dynds_wrong") is None
    found = verify_token(session=session, token=token)
    assert found is not None and found.name == "ci"
    session.expire_all()
    assert session.exec(select(ApiToken)).one().last_used_at is not None
    # The last token is not revoked by accident: that would open every write.
    with pytest.raises(LastToken):
        revoke_token(session=session, name="ci")
    assert verify_token(session=session, token=token) is not None
    assert revoke_token(session=session, name="ci", open_writes=True) == 1
    assert verify_token(session=session, token=token) is None and not has_tokens(session=session)


def test_revoking_the_last_token_with_close_writes_keeps_writes_closed(session):
    a, b = create_token(session=session, name="a"), create_token(session=session, name="b")
    assert revoke_token(session=session, name="a") == 1  # not the last one
    assert revoke_token(session=session, name="b", close_writes=True) == 1
    assert verify_token(session=session, token=a) is None and verify_token(session=session, token=b) is None
    # No token left, yet the server still asks for one (writes stay closed) and lists none.
    assert has_tokens(session=session) and writes_closed(session=session) and list_tokens(session=session) == []
    with pytest.raises(ValueError, match="reserved"):
        create_token(session=session, name=CLOSED_MARKER)
    assert revoke_token(session=session, name=CLOSED_MARKER) == 0 and writes_closed(session=session)
    c = create_token(session=session, name="c")  # a new token replaces the closed marker
    assert not writes_closed(session=session) and verify_token(session=session, token=c).name == "c"
    assert [t.name for t in list_tokens(session=session)] == ["c"]


def test_token_names_are_printable_text(session):
    for bad in ("a\x00b", "tab\there", "x" * 201):
        with pytest.raises(ValueError):
            create_token(session=session, name=bad)


def test_a_token_needs_a_name(session):
    import pytest

    with pytest.raises(ValueError, match="--name"):
        create_token(session=session, name="  ")
