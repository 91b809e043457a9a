"""Test-wide settings: designed schedules are cached in a temporary folder, never in the user's home."""

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _design_cache(tmp_path_factory):
    os.environ["ZSGUIDE_CACHE"] = str(tmp_path_factory.mktemp("zsguide_cache"))
    yield
