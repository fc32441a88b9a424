"""The crossed seeds-by-volumes interval and the verdict logic (smug.evaluation.statistics)."""

import numpy as np
import pytest

from smug.evaluation import Estimate, crossed_interval, mean_interval, verdict

# The variance mixes of a (seeds, volumes) score table: seed effect, volume effect, interaction.
MIXES = [(1.0, 0.3, 0.3), (0.3, 1.0, 0.3), (0.3, 0.3, 1.0), (1.0, 1.0, 1.0), (1.0, 0.0, 0.1), (0.0, 1.0, 0.1)]


def _crossed(rng, seeds, volumes, mix, mean=0.0):
    seed_sd, volume_sd, noise_sd = mix
    return (
        mean
        + seed_sd * rng.standard_normal((seeds, 1))
        + volume_sd * rng.standard_normal((1, volumes))
        + noise_sd * rng.standard_normal((seeds, volumes))
    )


@pytest.mark.parametrize("volumes", [3, 8])
@pytest.mark.parametrize("mix", MIXES)
def test_the_interval_covers_a_known_mean_close_to_95_percent(mix, volumes):
    """Simulated seeds-by-volumes tables at the default's 3 seeds: the 95 % interval holds the
    true mean in 92-99 % of 2000 datasets, whichever factor dominates."""
    rng = np.random.default_rng(7)
    hits = sum(
        mean_interval(_crossed(rng, 3, volumes, mix, mean=25.0)).excludes(25.0) is False for _ in range(2000)
    )
    assert 0.92 <= hits / 2000 <= 0.99, hits / 2000


def test_a_t_interval_over_seed_means_would_undercover_where_volumes_dominate():
    """Why the volumes must enter: the interval of the seeds' means alone covers far less."""
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(1000):
        table = _crossed(rng, 3, 3, (0.0, 1.0, 0.1))
        per_seed = table.mean(axis=1)
        half = 4.303 * per_seed.std(ddof=1) / np.sqrt(3)
        hits += abs(per_seed.mean()) <= half
    assert hits / 1000 < 0.5
    covered = sum(not mean_interval(_crossed(rng, 3, 3, (0.0, 1.0, 0.1))).excludes(0.0) for _ in range(1000))
    assert covered / 1000 > 0.92


def test_verdicts_on_constructed_differences():
    rng = np.random.default_rng(0)
    noise = 0.05 * rng.standard_normal((3, 8))
    positive, negative, zero = (
        mean_interval(2.0 + noise),
        mean_interval(-2.0 + noise),
        mean_interval(noise - noise.mean()),
    )
    assert verdict(positive, "greater") == "supported" and verdict(positive, "less") == "contradicted"
    assert verdict(negative, "greater") == "contradicted" and verdict(negative, "less") == "supported"
    assert verdict(zero, "greater") == verdict(zero, "less") == "inconclusive"
    # A threshold moves the line the interval is held against.
    assert verdict(positive, "greater", threshold=3.0) == "contradicted"
    assert positive.excludes(0.0) and not zero.excludes(0.0)
    assert zero.half_width > 0


def test_one_seed_gives_an_interval_over_volumes_but_no_verdict():
    scores = 5.0 + np.arange(4.0)[None, :] * 0.01
    estimate = mean_interval(scores)
    assert estimate.n_seeds == 1 and estimate.ci_low < 5.015 < estimate.ci_high
    assert verdict(estimate, "greater") == "inconclusive"


def test_the_mean_interval_is_the_pigeonhole_variance_with_satterthwaite_df():
    rng = np.random.default_rng(1)
    table = _crossed(rng, 3, 5, (1.0, 1.0, 1.0))
    seeds, volumes = table.shape
    ms_seed = volumes * table.mean(axis=1).var(ddof=1)
    ms_volume = seeds * table.mean(axis=0).var(ddof=1)
    variance = (ms_seed + ms_volume) / (seeds * volumes)
    df = (ms_seed + ms_volume) ** 2 / (ms_seed**2 / (seeds - 1) + ms_volume**2 / (volumes - 1))
    estimate = mean_interval(table)
    from scipy import stats

    assert estimate.df == pytest.approx(df)
    assert estimate.half_width == pytest.approx(stats.t.ppf(0.975, df) * np.sqrt(variance))


def test_statistics_of_several_tables_and_volume_sets():
    """A slope across models of out- on in-distribution scores: each model's two tables lie on two
    sets of volumes, dropped independently; the interval contains the true slope."""
    rng = np.random.default_rng(2)
    quality = np.array([20.0, 22.0, 24.0, 26.0])
    tables, sets = {}, {}
    for i, q in enumerate(quality):
        tables[f"in{i}"] = q + 0.2 * rng.standard_normal((3, 4))
        tables[f"out{i}"] = 0.5 * q + 1.0 + 0.2 * rng.standard_normal((3, 5))
        sets[f"in{i}"], sets[f"out{i}"] = "knee", "brain"

    def slope(t):
        x = [t[f"in{i}"].mean() for i in range(4)]
        y = [t[f"out{i}"].mean() for i in range(4)]
        return float(np.polyfit(x, y, 1)[0])

    estimate = crossed_interval(slope, tables, sets)
    assert estimate.n_volumes == 9
    assert estimate.ci_low < 0.5 < estimate.ci_high and estimate.half_width < 0.2


def test_bad_tables_are_named():
    with pytest.raises(ValueError, match="b: holds non-finite scores"):
        crossed_interval(lambda t: 0.0, {"a": np.zeros((2, 2)), "b": np.full((2, 2), np.nan)})
    with pytest.raises(ValueError, match="different numbers of seeds"):
        crossed_interval(lambda t: 0.0, {"a": np.zeros((2, 2)), "b": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="unknown direction"):
        verdict(Estimate(1.0, 0.5, 1.5, 3, 3, 2.0), "higher")
