"""What a config runs (smug.study.plan): the derivations the workflow turns into file paths."""

from __future__ import annotations

import copy

import yaml

from smug.study import plan
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
