"""`pinsage run --cold-start-share S`: the item-cold-start experiment beside a run (pipeline/evaluation/cold_start.py).

After the run itself (the model trained with every item: the "retrained" reference), under OUT/cold_start/:

    data/        the dataset without the held-out items (cold_start.hold_out) and held_out_items.txt
    run/         the same pipeline on that copy (same config; no context tower, the evaluation is item-to-item;
                 pushed whatever its blessing, the experiment needs its model)
    embed/       `pinsage embed` of that run's version over the full data (pipeline/refresh/embed.py), whose report
                 holds the cold-start section; the refreshed version goes to serving_model/ here, never to the
                 run's own serving directory

The section lands in the run's report (report.json "cold_start", report.md, report.html).
"""

from __future__ import annotations

import dataclasses
import os

from pipeline.configs import RunConfig

COLD_START_DIR = "cold_start"


def full_data_dir(output: str, config: RunConfig) -> str:
    """The directory in the CSV contract the run read (a bundled dataset is materialised under OUT/data/)."""
    if config.data_dir:
        return config.data_dir
    from pipeline.data import datasets

    _, _, name = datasets.resolve_dataset(config.dataset, config.shuffle_seed)
    return os.path.join(output, "data", name)


def held_out_config(config: RunConfig, data_dir: str) -> RunConfig:
    """The run's config over the hold-out copy: no tower, pushed whatever the blessing, no ablations."""
    return dataclasses.replace(
        config,
        dataset=None,
        data_dir=data_dir,
        shuffle_seed=None,
        ablations=(),
        history=dataclasses.replace(config.history, enabled=False),
        blessing=dataclasses.replace(config.blessing, push_unblessed=True),
    )


def run(output: str, config: RunConfig, share: float, by: str, seed: int, log=print) -> dict:
    """The experiment after the run into `output` finished; returns the report's cold-start section."""
    from pipeline import driver
    from pipeline.evaluation import cold_start
    from pipeline.refresh import embed

    root = os.path.join(output, COLD_START_DIR)
    full = full_data_dir(output, config)
    held = cold_start.hold_out(full, os.path.join(root, "data"), share, by, seed)
    log(
        f"[pinsage] cold start: {len(held.items)} items held out ({by}, share {share:g}, seed {seed}), "
        f"{held.interactions_removed} interactions removed; training without them in {os.path.join(root, 'run')}"
    )
    run_dir = os.path.join(root, "run")
    pipeline, _ = driver.build(run_dir, held_out_config(config, held.data_dir))
    driver.run_local(pipeline)
    pushed = driver.pushed_model(run_dir) or {}
    if not pushed.get("destination"):
        raise driver.StageError(f"{run_dir}: the hold-out run pushed no version ({pushed})")
    log("[pinsage] cold start: embedding the full catalogue with that model (pinsage embed)")
    opts = embed.RefreshOptions(
        model=pushed["destination"],
        data_dir=full,
        output=os.path.join(root, "embed"),
        push_to=os.path.join(root, "serving_model", config.push.model_name),
        beam_args=config.beam_args,
        embed_strategy=config.embed.strategy,
        retrained=driver.latest_artifact_dir(output, "BulkEmbedder", "embeddings"),
    )
    report = embed.refresh(opts)
    section = dict(report["cold_start"])
    section.update(
        how=f"{by} {share:g} of the items (seed {seed}) held out of training, then embedded by pinsage embed",
        hold_out={
            "by": by,
            "share": share,
            "seed": seed,
            "items": len(held.items),
            "interactions_removed": held.interactions_removed,
        },
        paths={"data": held.data_dir, "run": run_dir, "embed": opts.output, "version": report["destination"]},
    )
    return section
