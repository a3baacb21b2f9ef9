"""scripts/item_dislike_spread.py: the between-item spread of dislike shares that
calibrated the world's dislike propensity, with the binomial noise taken out."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "item_dislike_spread.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("item_dislike_spread", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def test_items_alike_but_for_noise_have_no_spread_and_real_differences_show() -> None:
    spread = _script().item_spread
    rng = np.random.default_rng(0)
    n = rng.integers(10, 60, size=4_000)
    # every item disliked at 20%: the shares differ by binomial noise alone
    alike = spread(zip(n.tolist(), rng.binomial(n, 0.2).tolist(), strict=True), 10)
    assert alike.share == pytest.approx(0.2, abs=0.01)
    assert alike.observed_std > 0.05 and alike.logit_sigma < 0.2
    # half the items at 10%, half at 30%: a true std of 0.10, 0.25 x sqrt(0.2 x 0.8)
    p = np.where(np.arange(4_000) % 2 == 0, 0.1, 0.3)
    mixed = spread(zip(n.tolist(), rng.binomial(n, p).tolist(), strict=True), 10)
    assert mixed.true_std == pytest.approx(0.10, abs=0.01)
    # log-odds of 10% and 30%: -2.20 and -0.85, a spread of 0.68 (a two-point one, fitted
    # with a normal of the same mean and std of shares: near it)
    assert mixed.logit_sigma == pytest.approx(0.68, abs=0.08)
    # items under the floor do not count; too few items say so
    assert spread([(5, 5), (12, 1), (20, 2)], 10).items == 2
    with pytest.raises(ValueError, match="two items with 10\\+ ratings"):
        spread([(5, 5), (12, 1)], 10)


@pytest.mark.parametrize(("mu", "sigma"), [(-5.0, 1.1), (-1.5, 1.7), (0.0, 0.4)])
def test_the_log_odds_spread_is_found_again_from_the_shares_it_makes(
    mu: float, sigma: float
) -> None:
    script = _script()
    shares = 1 / (1 + np.exp(-(mu + sigma * np.random.default_rng(1).standard_normal(400_000))))
    assert script.logit_normal_sigma(shares.mean(), shares.std()) == pytest.approx(sigma, abs=0.03)


def test_a_ratings_file_reads_as_the_backtest_reads_it(tmp_path: Path) -> None:
    rows = [f"{u},{i},{5 if (u + i) % 3 else 1},{1_700_000_000 + u}" for u in range(30)
            for i in range(4)]  # fmt: skip
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n" + "\n".join(rows) + "\n")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--file", str(path), "--map", "movielens"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    # 4 items of 30 ratings each, a third of them 1 star
    assert "4 items with 10+ likes and dislikes (120 in all), dislike share 0.333" in done.stdout
