# Job resources of every rule: threads locally, and the sbatch options the SLURM executor plugin
# reads under `--profile slurm`, all from config["cluster"].
from smug.study import KINDS, METHODS


def job_spec(rule_name):
    """cluster.resources.default overlaid by the rule's own entry: runtime, mem_mb, cpus, gpu."""
    table = config["cluster"]["resources"]
    return {**table["default"], **table.get(rule_name, {})}


def job_threads(rule_name):
    """A rule's threads are its cpus, so the local scheduler and SLURM's --cpus-per-task agree."""
    return job_spec(rule_name)["cpus"]


def job_resources(rule_name):
    """Snakemake resources of a rule's jobs, as the SLURM plugin reads them: runtime (minutes) and
    mem_mb always; GPUs only for rules that ask for them (gpu and gpu_model, or gres "gpu[:MODEL]:N"
    with cluster.gpu_request gres), so CPU jobs request none; the rule's partition (its own, else
    the GPU or CPU partition) and the account, constraint, QoS and extra sbatch options only when
    configured, so that otherwise the cluster's defaults apply."""
    spec = job_spec(rule_name)
    cluster = config["cluster"]
    resources = {"runtime": spec["runtime"], "mem_mb": spec["mem_mb"]}
    gpus = spec.get("gpu", 0)
    if gpus > 0 and cluster["gpu_request"] == "gres":
        model = cluster["gpu_model"]
        resources["gres"] = f"gpu:{model}:{gpus}" if model else f"gpu:{gpus}"
    elif gpus > 0:
        resources["gpu"] = gpus
        if cluster["gpu_model"]:
            resources["gpu_model"] = cluster["gpu_model"]
    partition = spec.get("partition") or cluster["gpu_partition" if gpus > 0 else "cpu_partition"]
    if partition:
        resources["slurm_partition"] = partition
    passed = {
        "account": "slurm_account",
        "constraint": "constraint",
        "qos": "qos",
        "slurm_extra": "slurm_extra",
    }
    for key, resource in passed.items():
        if cluster[key]:
            resources[resource] = cluster[key]
    return resources


def train_ranks(wildcards):
    """Data-parallel training processes: one per GPU of the train rule's job (at least one), or one
    for the kinds that cannot be trained on several ranks (smug.study.methods.Kind.data_parallel)."""
    method = model_setup(wildcards.model, config, ABLATION_MODELS)[0]
    if not KINDS[METHODS[method].kind].data_parallel:
        return 1
    return max(1, job_spec("train").get("gpu", 0))
