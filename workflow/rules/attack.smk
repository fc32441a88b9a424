# Attack generation, separate from evaluation: each model's perturbations are written to
# results/attacks/ so they can be re-scored, inspected or transferred to another model.


rule attack:
    input:
        unpack(model_test_inputs),
    output:
        out="results/attacks/seed{seed}/{model}/{attack}.h5",
    log:
        "results/logs/attack/{model}_{attack}_seed{seed}.log",
    benchmark:
        "results/benchmarks/rules/attack_{model}_{attack}_seed{seed}.tsv"
    wildcard_constraints:
        attack="|".join(WHITE_BOX_ATTACKS),
        seed=r"\d+",
    conda:
        "../../environment.yml"
    threads: job_threads("attack")
    resources:
        **job_resources("attack"),
    params:
        attack="{attack}",
        eps=lambda w: config["evaluation"]["attacks"][w.attack]["eps"],
        steps=config["evaluation"]["pgd"]["steps"],
        step_factor=config["evaluation"]["pgd"]["step_factor"],
        random_start=config["evaluation"]["pgd"]["random_start"],
        loss_target=lambda w: plan.attack_loss_target(config, w.attack),
        eot_samples=config["evaluation"]["pgd"]["eot_samples"],
        test_slices=config["evaluation"]["test_slices"],
        batch_size=config["evaluation"]["batch_size"],
        seed=seed_of,
        device=config["device"],
        checkpoint_unrolls=config["memory"]["checkpoint_unrolls"],
        sample_chunk=config["memory"]["sample_chunk"],
    script:
        "../../scripts/attack.py"


# A SMUG paper's own attack protocol fixes its PGD settings (smug.study.attacks.PROTOCOLS): it reads
# only its eps grid from the config, so evaluation.pgd does not reach it.
use rule attack as protocol_attack with:
    wildcard_constraints:
        attack="|".join(PROTOCOLS),
    params:
        steps=None,
        step_factor=None,
        random_start=None,
        loss_target=None,
        eot_samples=None,


rule noise:
    input:
        **test_inputs(),
    output:
        out="results/attacks/seed{seed}/noise/{attack}.h5",
    log:
        "results/logs/attack/noise_{attack}_seed{seed}.log",
    benchmark:
        "results/benchmarks/rules/noise_{attack}_seed{seed}.tsv"
    wildcard_constraints:
        attack="|".join(NOISE_ATTACKS),
        seed=r"\d+",
    conda:
        "../../environment.yml"
    threads: job_threads("noise")
    resources:
        **job_resources("noise"),
    params:
        attack="{attack}",
        eps=lambda w: plan.noise_eps(config, w.attack),
        test_slices=config["evaluation"]["test_slices"],
        batch_size=config["evaluation"]["batch_size"],
        seed=seed_of,
        device="cpu",
    script:
        "../../scripts/attack.py"
