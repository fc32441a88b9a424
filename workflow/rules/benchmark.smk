# Performance: `snakemake benchmark_all` (after a run) times the reconstruction code at the
# embedded sizes, checks its ratio targets, and summarises every rule's benchmark file.


rule benchmark_all:
    input:
        pipeline=final_outputs(),
    output:
        throughput="results/benchmarks/throughput.csv",
        targets=report(
            "results/benchmarks/targets.csv",
            caption="../report/benchmark_targets.rst",
            category="Performance",
        ),
        rules="results/benchmarks/rules.csv",
    log:
        "results/logs/benchmark_all.log",
    benchmark:
        "results/benchmarks/benchmark_all.tsv"
    conda:
        "../../environment.yml"
    threads: job_threads("benchmark_all")
    resources:
        **job_resources("benchmark_all"),
    params:
        size=config["benchmark"]["size"],
        rules_dir=rule_benchmark_folder,
        out_dir=output_folder,
        device=config["device"],
        amp=config["training"]["amp"],
        channels_last=config["training"]["channels_last"],
        cudnn_benchmark=config["training"]["cudnn_benchmark"],
        pin_memory=config["training"]["pin_memory"],
    script:
        "../../scripts/bench.py"
