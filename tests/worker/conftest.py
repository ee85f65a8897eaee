"""The worker tests' fixtures live in service_helpers (tests/app/test_commands.py shares them)."""

from service_helpers import make_job, redis_url, serve, sessions, settings  # noqa: F401
