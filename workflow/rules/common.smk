# Input functions of the models' stages (training, attacks, evaluation, tables, figures): each path
# and setting a rule needs, derived from the config. A rule's script reads its named inputs,
# outputs and params as its options of the same names (smug.utils.cli), so nothing here builds a flag.
import re
from pathlib import Path

from smug.study import plan
from smug.study import (
    FIGURES,
    METHODS,
    NOISE_ATTACKS,
    PROTOCOLS,
    WHITE_BOX_ATTACKS,
    backbone_models,
    experiment_models,
    model_setup,
    pretrained_methods,
    seeded,
    trained_methods,
    variant_models,
)


def final_outputs():
    """What `snakemake` with no target builds."""
    return [
        *synthetic_volumes(),
        *mask_files(),
        "results/figures/masks.png",
        "results/tables/robustness.csv",
        "results/tables/training_health.csv",
        "results/tables/claims.csv",
        *expand(
            "results/tables/{table}.html",
            table=("robustness", "distribution_shift", "training_health", "claims"),
        ),
        *expand("results/figures/{figure}.png", figure=[*FIGURES, "claims"]),
    ]


# ---- seeds --------------------------------------------------------------------------------------
# Every seeded model (smug.study.methods.Kind.seeded) is made once per seed under
# results/models/{model}/seed{seed}/; a method no seed changes (zero-filled, CS) once for all seeds.
# Attacks and evaluations are per seed for every model: their random starts and noise draws follow it.
SEEDS = config["seeds"]


def seed_of(wildcards):
    """The seed of a job, as the integer its script reads."""
    return int(wildcards.seed)


def model_file(model, seed):
    """A model's model.pt for a seed: its own, or the one of a method no seed changes."""
    method = ABLATION_MODELS[model].method if model in ABLATION_MODELS else model
    if seeded(method):
        return f"results/models/{model}/seed{seed}/model.pt"
    return f"results/models/{model}/model.pt"


def model_files(models, seeds=SEEDS):
    """Every seed's model.pt of each model, each file once."""
    return list(dict.fromkeys(model_file(model, seed) for model in models for seed in seeds))


# ---- training ---------------------------------------------------------------------------------

# Every trained model, its kind and the model it starts from: smug.study.methods.METHODS; and the
# ablation experiments' variants of them (smug.study.ablations), trained by the same rule.
TRAINED_MODELS = trained_methods()
ABLATION_MODELS = variant_models(config)
TRAINABLE_PATTERN = "|".join(re.escape(name) for name in [*TRAINED_MODELS, *ABLATION_MODELS])


def split_inputs(option, split, anatomy):
    """A split's volume list as the script's ``option``, its sensitivity maps and the training mask."""
    return {
        option: split_list(split, anatomy),
        "sens_maps": split_sens_maps(split, anatomy),
        "mask": training_mask(),
    }


def training_inputs(wildcards):
    anatomy = config["data"]["train_anatomy"]
    inputs = split_inputs("train", "train", anatomy)
    inputs["val"] = split_list("val", anatomy)
    inputs["sens_maps"] += split_sens_maps("val", anatomy)
    parent = model_setup(wildcards.model, config, ABLATION_MODELS)[2]
    if parent is not None:
        inputs["init"] = model_file(parent, wildcards.seed)
    return inputs


def training_spec(wildcards):
    """The spec scripts/train.py receives: only the settings its weights depend on (study.plan)."""
    return plan.training_spec(config, wildcards.model, seed_of(wildcards), ABLATION_MODELS)


# ---- attacks and evaluation --------------------------------------------------------------------


def test_inputs():
    """Test volumes of the training anatomy, their sensitivity maps and the training mask."""
    return split_inputs("test", "test", config["data"]["train_anatomy"])


def model_test_inputs(wildcards):
    """The test inputs and the job's model (an attack, a diagnosis)."""
    return {**test_inputs(), "model": model_file(wildcards.model, wildcards.seed)}


def scoring_inputs(wildcards):
    """What every evaluation reads: the test split, its maps, the training mask and the model."""
    inputs = model_test_inputs(wildcards)
    inputs["train_mask"] = inputs.pop("mask")
    return inputs


def attack_files(model, seed):
    """Perturbations a model is evaluated under with a seed (study.plan.model_perturbations)."""
    pairs = plan.model_perturbations(config, model)
    return [f"results/attacks/seed{seed}/{folder}/{attack}.h5" for folder, attack in pairs]


def evaluation_inputs(wildcards):
    untrained = wildcards.model == "untrained"
    generators = [] if untrained else config["evaluation"]["generators"]
    sampling_shift = not untrained or config["untrained"]["sampling_shift"]
    inputs = {
        **scoring_inputs(wildcards),
        "masks": mask_files() if sampling_shift else [],
        "attacks": attack_files(wildcards.model, wildcards.seed),
        "generators": [model_file(g, wildcards.seed) for g in generators],
        "shift_test": [],
    }
    shift = config["data"]["shift_anatomy"]
    if shift:
        inputs["shift_test"] = split_list("test", shift)
        inputs["sens_maps"] = inputs["sens_maps"] + split_sens_maps("test", shift)
    return inputs


def ttt_inputs(wildcards):
    model = model_file(wildcards.model, wildcards.seed)
    return {**split_inputs("test", "test", config["data"]["shift_anatomy"]), "model": model}


def evaluation_csvs():
    """Every seed's per-volume scores of every evaluated model, and of test-time training."""
    return [
        *expand("results/eval/seed{seed}/{model}.csv", seed=SEEDS, model=config["evaluation"]["models"]),
        *expand("results/eval/seed{seed}/ttt/{model}.csv", seed=SEEDS, model=plan.ttt_models(config)),
    ]


def health_inputs(wildcards):
    return {
        "records": model_files(plan.health_models(config)),
        "scores": expand(
            "results/eval/seed{seed}/{model}.csv", seed=SEEDS, model=config["evaluation"]["models"]
        ),
    }


def figure_inputs(wildcards):
    """The figures' curves come from the table over every seed; the images, from the first seed."""
    fig = config["evaluation"]["figure"]
    shown = [m for m in ("modl", "smug") if m in config["evaluation"]["models"]]
    seed = SEEDS[0]
    return {
        "table": "results/tables/robustness.csv",
        "recons": expand("results/recons/seed{seed}/{model}", seed=seed, model=fig["models"]),
        "attack_files": [f"results/attacks/seed{seed}/{m}/{fig['attack']}.h5" for m in shown],
    }


# ---- ablations (target `ablations`; smug.study.plan derives the models) ------------------------

ABLATION_EXPERIMENTS = experiment_models(config)


def ablation_attack_files(model, seed):
    """A model's perturbations under ablations.attacks (none for the untrained network)."""
    run_check(checks.check_target_attacks, "ablations")
    attacks = plan.ablation_attacks(config, ABLATION_EXPERIMENTS, model)
    return [f"results/attacks/seed{seed}/{model}/{attack}.h5" for attack in attacks]


def ablation_evaluation_inputs(wildcards):
    attacks = ablation_attack_files(wildcards.model, wildcards.seed)
    return {**scoring_inputs(wildcards), "attacks": attacks}


def ablation_health_inputs(wildcards):
    scored = plan.ablation_scored_models(ABLATION_EXPERIMENTS)
    return {
        "records": model_files(plan.ablation_trained_models(ABLATION_EXPERIMENTS, ABLATION_MODELS)),
        "scores": expand("results/ablations/eval/seed{seed}/{model}.csv", seed=SEEDS, model=scored),
    }


def ablation_table_inputs(wildcards):
    return {
        "scores": ablation_scores(),
        "diagnostics": expand(
            "results/ablations/diagnostics/seed{seed}/{model}.csv",
            seed=SEEDS,
            model=plan.diagnosed_models(config, ABLATION_EXPERIMENTS),
        ),
        "health": "results/tables/ablation_health.csv",
    }


def ablation_scores():
    """Every seed's per-volume scores of the experiments' models (their claims read them)."""
    return expand(
        "results/ablations/eval/seed{seed}/{model}.csv",
        seed=SEEDS,
        model=plan.ablation_models(ABLATION_EXPERIMENTS),
    )


def ablation_claims(wildcards):
    """The claims made of the ablation experiments (source_table: ablations), checked against the
    experiments when an ablation is built."""
    run_check(checks.check_target_attacks, "ablations")
    run_check(checks.check_claims_config, source="ablations")
    return [claim for claim in config["claims"] if checks.claim_source(claim) == "ablations"]


# ---- backbones (target `backbones`; smug.study.ablations.backbone_models) -----------------------

BACKBONE_MODELS = [model.name for model in backbone_models(config)]


def backbone_evaluation_inputs(wildcards):
    """A backbone model's perturbations (study.plan.backbone_perturbations)."""
    run_check(checks.check_target_attacks, "backbones")
    pairs = plan.backbone_perturbations(config, wildcards.model)
    files = [f"results/attacks/seed{wildcards.seed}/{folder}/{a}.h5" for folder, a in pairs]
    return {**scoring_inputs(wildcards), "attacks": files}


def backbone_scores(models=BACKBONE_MODELS):
    """Every seed's per-volume scores of the backbones' models (their claims read them)."""
    return expand("results/backbones/eval/seed{seed}/{model}.csv", seed=SEEDS, model=models)


def backbone_claims(wildcards):
    """The claims made of the backbones (source_table: backbones), checked when they are built."""
    run_check(checks.check_claims_config, source="backbones")
    return [claim for claim in config["claims"] if checks.claim_source(claim) == "backbones"]


# ---- reconstructing a user's own files (target `reconstructions`) ------------------------------


def reconstruct_files():
    """The fastMRI volumes in reconstruct.folder, sorted."""
    folder = config["reconstruct"]["folder"]
    if folder is None:
        raise ValueError(
            "config error: reconstruct.folder is null; set it to a folder of fastMRI .h5 files to reconstruct"
        )
    files = sorted(str(path) for path in Path(folder).glob("*.h5"))
    if not files:
        raise ValueError(f"config error: reconstruct.folder: {folder} holds no .h5 files")
    return files


def reconstruct_inputs(wildcards):
    """A user's files are reconstructed by the first seed's model."""
    return {
        "model": model_file(wildcards.model, SEEDS[0]),
        "mask": training_mask(),
        "files": reconstruct_files(),
    }


def reconstruct_outputs(wildcards):
    reconstruct_files()  # a missing or empty folder stops here, named
    return expand("results/reconstructions/{model}", model=config["reconstruct"]["models"])


# ---- parameters derived from a rule's own files (so no path prefix is hard-coded twice) ------


def output_folder(wildcards, output):
    """Folder of a rule's first output."""
    return str(Path(output[0]).parent)


def rule_benchmark_folder(wildcards, output):
    """Where every rule's `benchmark:` file lies, beside the benchmark summary's outputs."""
    return str(Path(output[0]).parent / "rules")


def recon_root(wildcards, input):
    """Folder holding every model's reconstruction folder."""
    return str(Path(input.recons[0]).parent)
