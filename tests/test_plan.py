"""What a config runs (smug.study.plan): the derivations the workflow turns into file paths."""

from __future__ import annotations

import copy

import pytest
import yaml

from smug.study import experiment_models, plan, variant_models
from tests.workflow_utils import REPO

CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_random_noise_covers_the_grids_of_every_attack_of_its_ball():
    config = copy.deepcopy(CONFIG)
    config["evaluation"]["attacks"] = {
        "pgd_kspace_linf": {"eps": [0.01, 0.02]},
        "pgd_kspace_linf_journal": {"eps": [0.02, 0.04]},
        "pgd_image_linf": {"eps": [0.004]},
    }
    assert plan.noise_eps(config, "noise_kspace_linf") == [0.01, 0.02, 0.04]
    assert plan.noise_eps(config, "noise_image_linf") == [0.004]
    assert plan.noise_eps(config, "noise_kspace_l2") == []


def test_an_attack_may_name_the_models_it_is_for():
    config = copy.deepcopy(CONFIG)
    config["evaluation"]["attacks"] = {
        "pgd_kspace_linf": {"eps": [0.01]},
        "pgd_image_linf": {"eps": [0.1], "models": ["smug"]},
    }
    assert plan.model_attacks(config, "smug") == ["pgd_kspace_linf", "pgd_image_linf"]
    assert plan.model_attacks(config, "modl") == ["pgd_kspace_linf"]
    config["evaluation"]["pgd"]["loss_target"] = "gt"
    config["evaluation"]["attacks"]["pgd_image_linf"]["loss_target"] = "clean"
    assert plan.attack_loss_target(config, "pgd_kspace_linf") == "gt"
    assert plan.attack_loss_target(config, "pgd_image_linf") == "clean"


def test_test_time_training_needs_an_anatomy_shift_and_an_evaluated_model():
    config = copy.deepcopy(CONFIG)
    config["evaluation"]["models"] = ["zero_filled", "modl"]
    config["evaluation"]["ttt"]["models"] = ["modl", "smug"]
    config["data"]["shift_anatomy"] = "brain"
    assert plan.ttt_models(config) == ["modl"]
    config["data"]["shift_anatomy"] = None
    assert plan.ttt_models(config) == []


def test_health_covers_the_pretrained_models_the_evaluated_ones_start_from():
    config = copy.deepcopy(CONFIG)
    config["evaluation"]["models"] = ["zero_filled", "rs_e2e"]
    assert plan.health_models(config) == ["zero_filled", "rs_e2e", "modl", "denoiser"]


def test_the_config_hash_follows_every_setting_and_no_key_order():
    config = copy.deepcopy(CONFIG)
    reordered = dict(reversed(list(config.items())))
    assert plan.config_hash(config) == plan.config_hash(reordered)
    config["seeds"] = [*config["seeds"], 99]
    assert plan.config_hash(config) != plan.config_hash(reordered)


def test_masks_pair_every_acceleration_with_a_centre_that_keeps_its_line_count():
    config = copy.deepcopy(CONFIG)
    config["masks"].update(acceleration=4, center_fraction=0.08, eval_accelerations=[8, 2, 4])
    assert plan.mask_accelerations(config) == [2, 4, 8]
    assert plan.mask_center_fractions(config) == [0.16, 0.08, 0.04]


def test_maps_are_estimated_for_the_largest_slice_count_of_a_split():
    config = copy.deepcopy(CONFIG)
    config["training"]["val_slices"], config["classical"]["val_slices"] = 4, 9
    config["evaluation"]["test_slices"] = None
    assert plan.split_slices(config, "val") == 9
    assert plan.split_slices(config, "test") is None  # every slice
    config["data"]["volume_limits"] = {"max_width": 4, "max_slices": 1, "max_height": 3, "max_coils": 2}
    assert plan.volume_limits(config) == [1, 2, 3, 4]


def test_a_fastmri_split_names_its_datasets_as_a_list_or_says_which_entry_is_missing():
    config = copy.deepcopy(CONFIG)
    config["fastmri"]["splits"]["val"] = {"knee": {"dataset": "knee_multicoil_val", "count": 3}}
    assert plan.fastmri_split(config, "val", "knee") == {
        "dataset": ["knee_multicoil_val"],
        "start": 0,
        "count": 3,
    }
    with pytest.raises(ValueError, match=r"fastmri.splits.val has no entry for anatomy 'brain'"):
        plan.fastmri_split(config, "val", "brain")


def test_a_training_spec_holds_the_settings_of_its_kind_and_what_it_starts_from():
    spec = plan.training_spec(CONFIG, "smug", 2, {})
    assert (spec["name"], spec["kind"], spec["init"], spec["seed"]) == ("smug", "smug", "denoiser", 2)
    assert "smoothing" in spec and "adversarial" not in spec
    unet = plan.training_spec(CONFIG, "unet", 0, {})
    assert unet["init"] is None and "smoothing" not in unet and "model" in unet


def test_each_model_is_scored_under_its_attacks_their_noise_and_the_untrained_under_transfers_and_noise():
    config = copy.deepcopy(CONFIG)
    config["evaluation"]["attacks"] = {
        "pgd_kspace_linf": {"eps": [0.01]},
        "pgd_kspace_linf_journal": {"eps": [0.02]},
        "pgd_image_linf": {"eps": [0.1], "models": ["smug"]},
    }
    assert plan.model_perturbations(config, "modl") == [
        ("modl", "pgd_kspace_linf"),
        ("modl", "pgd_kspace_linf_journal"),
        ("noise", "noise_kspace_linf"),
    ]
    assert ("noise", "noise_image_linf") in plan.model_perturbations(config, "smug")
    config["untrained"].update(attacks=["pgd_kspace_linf"], attack_source="modl")
    assert plan.model_perturbations(config, "untrained") == [
        ("modl", "pgd_kspace_linf"),
        ("noise", "noise_kspace_linf"),
    ]


def test_ablation_models_are_each_listed_once_with_the_health_references_scored_clean():
    experiments = experiment_models(CONFIG)
    variants = variant_models(CONFIG)
    models = plan.ablation_models(experiments)
    assert len(models) == len(set(models)) and "modl" in models
    scored = plan.ablation_scored_models(experiments)
    assert scored[: len(models)] == models and set(plan.HEALTH_REFERENCES) <= set(scored)
    trained = plan.ablation_trained_models(experiments, variants)
    ablation_variants = {name for name, v in variants.items() if "model.backbone" not in dict(v.settings)}
    assert ablation_variants <= set(trained) and "zero_filled" not in trained
    assert plan.ablation_attacks(CONFIG, experiments, "modl") == CONFIG["ablations"]["attacks"]
    assert plan.ablation_attacks(CONFIG, experiments, "untrained") == []
    if "cs_tv" not in models:
        assert plan.ablation_attacks(CONFIG, experiments, "cs_tv") == []
