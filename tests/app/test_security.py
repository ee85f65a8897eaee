"""API tokens: only hashes are stored; verification and revocation."""

from sqlmodel import select

from app.models import ApiToken
from app.security import create_token, has_tokens, hash_token, list_tokens, revoke_token, verify_token


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
    assert revoke_token(session=session, name="ci") == 1
    assert verify_token(session=session, token=token) is None and not has_tokens(session=session)


def test_a_token_needs_a_name(session):
    import pytest

    with pytest.raises(ValueError, match="--name"):
        create_token(session=session, name="  ")
