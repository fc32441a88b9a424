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
    NOISE_COUNTERPART,
    PROTOCOLS,
    WHITE_BOX_ATTACKS,
    ancestors,
    experiment_models,
    model_setup,
    seeded,
    spec_settings,
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
    """The spec scripts/train.py receives: exactly the settings that determine the model's weights
    (smug.study.methods.spec_settings, with an ablation variant's settings applied) and the method it
    starts from, so a setting change retrains only the models reading it."""
    name = wildcards.model
    method, settings, init = model_setup(name, config, ABLATION_MODELS)
    return {
        "name": name,
        "kind": METHODS[method].kind,
        "init": init,
        "seed": seed_of(wildcards),
        **spec_settings(method, settings),
        "data": {
            "challenge": config["data"]["challenge"],
            "train_slices": config["training"]["train_slices"],
            "val_slices": config["training"]["val_slices"],
        },
    }


# ---- methods that are not trained by scripts/train.py ----------------------------------------


def classical_inputs(wildcards):
    return split_inputs("val", "val", config["data"]["train_anatomy"])


def untrained_settings(wildcards):
    return plan.untrained_settings(config, seed_of(wildcards))


# ---- attacks and evaluation --------------------------------------------------------------------


def test_inputs():
    """Test volumes of the training anatomy, their sensitivity maps and the training mask."""
    return split_inputs("test", "test", config["data"]["train_anatomy"])


def attack_inputs(wildcards):
    return {**test_inputs(), "model": model_file(wildcards.model, wildcards.seed)}


def attack_eps(wildcards):
    return config["evaluation"]["attacks"][wildcards.attack]["eps"]


def attack_loss_target(wildcards):
    return plan.attack_loss_target(config, wildcards.attack)


def noise_eps(wildcards):
    return plan.noise_eps(config, wildcards.attack)


def attack_files(model, seed):
    """Perturbations a model is evaluated under with a seed: its own white-box attacks and random
    noise of the same norms, or, for the untrained network (no gradient), attacks transferred from
    another model of the same seed."""
    if model == "untrained":
        source = config["untrained"]["attack_source"]
        return [f"results/attacks/seed{seed}/{source}/{a}.h5" for a in config["untrained"]["attacks"]]
    attacks = plan.model_attacks(config, model)
    noise = dict.fromkeys(NOISE_COUNTERPART[a] for a in attacks)
    return [f"results/attacks/seed{seed}/{model}/{a}.h5" for a in attacks] + [
        f"results/attacks/seed{seed}/noise/{n}.h5" for n in noise
    ]


def evaluation_inputs(wildcards):
    untrained = wildcards.model == "untrained"
    generators = [] if untrained else config["evaluation"]["generators"]
    sampling_shift = not untrained or config["untrained"]["sampling_shift"]
    tests = test_inputs()
    inputs = {
        "test": tests["test"],
        "sens_maps": tests["sens_maps"],
        "train_mask": tests["mask"],
        "model": model_file(wildcards.model, wildcards.seed),
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


# ---- ablations (target `ablations`, smug.study.ablations) -------------------------------------------

ABLATION_EXPERIMENTS = experiment_models(config)
# The health checks hold every model against these, evaluated clean on the same test slices.
HEALTH_REFERENCES = ("zero_filled", "cs_tv")


def ablation_models():
    """Every model of an experiment (variants and references), each once."""
    return list(dict.fromkeys(m.name for models in ABLATION_EXPERIMENTS.values() for m in models))


def ablation_trained_models():
    """The experiments' models with a training record (all but zero-filled, CS, untrained)."""
    return [m for m in ablation_models() if m in ABLATION_MODELS or m in TRAINED_MODELS]


def ablation_attack_files(model, seed):
    """A model's perturbations under ablations.attacks; the untrained network (no gradient) and the
    health references are scored clean only."""
    if model == "untrained" or model in HEALTH_REFERENCES and model not in ablation_models():
        return []
    run_check(checks.check_ablation_attacks)
    return [f"results/attacks/seed{seed}/{model}/{attack}.h5" for attack in config["ablations"]["attacks"]]


def ablation_evaluation_inputs(wildcards):
    tests = test_inputs()
    return {
        "test": tests["test"],
        "sens_maps": tests["sens_maps"],
        "train_mask": tests["mask"],
        "model": model_file(wildcards.model, wildcards.seed),
        "attacks": ablation_attack_files(wildcards.model, wildcards.seed),
    }


def diagnose_inputs(wildcards):
    return {**test_inputs(), "model": model_file(wildcards.model, wildcards.seed)}


def ablation_health_inputs(wildcards):
    scored = [*ablation_models(), *(m for m in HEALTH_REFERENCES if m not in ablation_models())]
    return {
        "records": model_files(ablation_trained_models()),
        "scores": expand("results/ablations/eval/seed{seed}/{model}.csv", seed=SEEDS, model=scored),
    }


def ablation_table_inputs(wildcards):
    return {
        "scores": expand(
            "results/ablations/eval/seed{seed}/{model}.csv", seed=SEEDS, model=ablation_models()
        ),
        "diagnostics": expand(
            "results/ablations/diagnostics/seed{seed}/{model}.csv",
            seed=SEEDS,
            model=plan.diagnosed_models(config, ABLATION_EXPERIMENTS),
        ),
        "health": "results/tables/ablation_health.csv",
    }


def ablation_scores():
    """Every seed's per-volume scores of the experiments' models (their claims read them)."""
    return expand("results/ablations/eval/seed{seed}/{model}.csv", seed=SEEDS, model=ablation_models())


def ablation_claims(wildcards):
    """The claims made of the ablation experiments (source_table: ablations), checked against the
    experiments when an ablation is built."""
    run_check(checks.check_ablation_attacks)
    run_check(checks.check_claims_config, ablations=True)
    return [claim for claim in config["claims"] if checks.is_ablation_claim(claim)]


def ablation_figure_kind(wildcards):
    return config["ablations"]["experiments"][wildcards.experiment]["figure"]


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
