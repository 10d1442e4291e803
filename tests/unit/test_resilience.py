from __future__ import annotations

import random

from flyllm.resilience import RetryPolicy


def test_backoff_grows_exponentially_with_jitter_and_cap() -> None:
    policy = RetryPolicy(base=0.5, cap=4.0, jitter=0.25, rng=random.Random(0))
    for round_number, nominal in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        delays = [policy.delay(round_number, None) for _ in range(200)]
        assert all(0.75 * nominal <= d <= nominal for d in delays)
        assert max(delays) - min(delays) > 0.1 * nominal  # jitter really varies


def test_server_hint_wins_but_is_capped() -> None:
    policy = RetryPolicy(max_wait=30.0)
    assert policy.delay(1, 2.5) == 2.5
    assert policy.delay(5, 0.0) == 0.0
    assert policy.delay(1, 600.0) == 30.0
