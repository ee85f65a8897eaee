"""Passwords out of printed URLs and error messages (app/core/redact.py)."""

import pytest

from app.core.redact import redact_url, scrub, url_passwords
from dynds.commands.common import redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("rediss://default:s3cret@redis:6380/0?ssl_cert_reqs=required", "rediss://default:***@redis:6380/0?ssl_cert_reqs=required"),
        ("postgresql://dynds:s3cret@db:5432/dynds?sslmode=require", "postgresql://dynds:***@db:5432/dynds?sslmode=require"),
        ("postgresql://dynds@db/dynds?sslmode=verify-full&password=s3cret", "postgresql://dynds@db/dynds?sslmode=verify-full&password=***"),
        ("redis://:p@ss/w:rd@redis:6379/0", "redis://:***@redis:6379/0"),  # an unencoded '@' or '/' in the password
        ("postgresql://dynds@db/dynds?application_name=a@b", "postgresql://dynds@db/dynds?application_name=a@b"),  # '@' in the query only
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("sqlite:////var/lib/dynds/dynds.db", "sqlite:////var/lib/dynds/dynds.db"),
        (None, ""),
    ],
)
def test_redact_url_hides_the_password_and_keeps_the_rest(url, shown):
    assert redact_url(url) == shown
    assert redact(url) == shown  # what the commands print


def test_scrub_takes_the_password_out_of_a_message_however_it_is_written():
    url = "postgresql://dynds:p%40ss@db/dynds"
    assert set(url_passwords(url)) == {"p%40ss", "p@ss"}
    message = f"could not parse {url}; auth p@ss refused"
    assert scrub(message, url) == "could not parse postgresql://dynds:***@db/dynds; auth *** refused"
    assert scrub("nothing secret", None, "redis://redis/0") == "nothing secret"
