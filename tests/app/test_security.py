"""API tokens: only hashes are stored; verification and revocation."""

import pytest
from sqlmodel import select

from app.models import ApiToken
from app.security import (
    BOOTSTRAP_NAME,
    CLOSED_MARKER,
    LastToken,
    create_token,
    ensure_bootstrap_token,
    has_tokens,
    hash_token,
    is_loopback,
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


# ---------------------------------------------------------------- the door


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST", "::1", "[::1]", "::ffff:127.0.0.1"])
def test_loopback_addresses(host):
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "", "192.168.1.20", "10.0.0.5", "fe80::1%eth0", "::ffff:10.0.0.1", "dynds.example", "localhost.evil"]
)
def test_everything_else_reaches_beyond_this_machine(host):
    assert not is_loopback(host)  # a host name may resolve to any interface


def test_the_bootstrap_token_is_stored_hashed_once_and_replaced_when_the_secret_changes(session):
    secret = "bootstrap-secret-0123456789abcdef"
    assert ensure_bootstrap_token(session=session, token=secret) == "created"
    (row,) = session.exec(select(ApiToken)).all()
    assert row.name == BOOTSTRAP_NAME and row.token_hash == hash_token(secret) and secret not in row.token_hash
    assert verify_token(session=session, token=secret).name == BOOTSTRAP_NAME
    # Every restart with the same secret: nothing new.
    assert ensure_bootstrap_token(session=session, token=secret) == "unchanged"
    assert len(session.exec(select(ApiToken)).all()) == 1
    # A rotated secret replaces the old one, which stops working; other tokens are left alone.
    ci = create_token(session=session, name="ci")
    rotated = "bootstrap-secret-rotated-0123456789"
    assert ensure_bootstrap_token(session=session, token=rotated) == "replaced"
    assert verify_token(session=session, token=secret) is None and verify_token(session=session, token=rotated).name == BOOTSTRAP_NAME
    assert sorted(t.name for t in list_tokens(session=session)) == [BOOTSTRAP_NAME, "ci"] and verify_token(session=session, token=ci)


def test_a_bootstrap_token_opens_writes_that_were_closed(session):
    token = create_token(session=session, name="ci")
    revoke_token(session=session, name="ci", close_writes=True)
    assert writes_closed(session=session)
    assert ensure_bootstrap_token(session=session, token="bootstrap-secret-0123456789abcdef") == "created"
    assert not writes_closed(session=session) and verify_token(session=session, token=token) is None
    assert [t.name for t in list_tokens(session=session)] == [BOOTSTRAP_NAME]


@pytest.mark.parametrize("secret", ["tiny-4f9a", "has a space in it 0123456789", "tab\there-0123456789abcdef"])
def test_a_weak_or_garbled_bootstrap_token_is_refused_without_being_named(session, secret):
    with pytest.raises(ValueError, match="bootstrap token") as info:
        ensure_bootstrap_token(session=session, token=secret)
    assert secret not in str(info.value) and not has_tokens(session=session)
