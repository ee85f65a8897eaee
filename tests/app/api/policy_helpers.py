"""Fixtures and helpers the spec-policy tests share (test_spec_policy, test_data_policy, test_device_policy,
test_sweep_grid import them): settings that allow only tests/app/conftest.py's data directory and offer only the CPU."""

from __future__ import annotations

import pytest

from app.core.config import Settings


@pytest.fixture
def settings(tmp_path, data_dir) -> Settings:
    return Settings(database_url="sqlite://", home=tmp_path / "home", data_dirs=[str(data_dir)], devices=["cpu"])


def locs(errors) -> set[tuple]:
    """The error locations of a list of validation errors."""
    return {tuple(e["loc"]) for e in errors}
