"""The packaged default policy, shared by the policy tests."""

from __future__ import annotations

import pytest

from serving.scoring.policy.schema import Policy, load_policy


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()
