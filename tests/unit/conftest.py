"""Unit tests: no servers, no network, and real time only where timing is the subject.

Each module builds what it needs with plain factory functions; the fixtures here
are the few things every module shares.
"""

from datetime import UTC, datetime

import pytest


@pytest.fixture
def now() -> datetime:
    """A fixed instant to run the rules at: midday UTC, 1 June 2026."""
    return datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
