"""`edge train`: run the stages of a training recipe, or rebuild the shipped default bundle.

    edge train STAGE --recipe R.yaml [--set KEY=VALUE ...]   one stage (resumes by itself)
    edge train all --recipe R.yaml                          every stage, in order
    edge train list --recipe R.yaml                         the stages and their state
    edge train default-bundle [--out DIR] [--install]       data -> tokenizer -> stages ->
                                                            export -> accuracy table -> bundle
                                                            in DIR (default runs/default-bundle);
                                                            --install replaces the shipped one

Several processes / GPUs: `accelerate launch --config_file training/accelerate/ddp.yaml
-m edge train STAGE --recipe R.yaml` (FSDP and DeepSpeed configs beside it).

`training` and the recipe are imported inside the functions: `edge --help` builds every
subcommand's parser, and must neither pay for nor need the training stack.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from edge.progress import ProgressPrinter
from runtime.errors import ConfigError, EdgeError

# What `edge train` imports to do any work: the [train] extra.
TRAIN_MODULES = ("torch", "transformers", "accelerate", "yaml")
TRAIN_INSTALL = "pip install -e '.[train]'"  # works from a checkout (the package is not on PyPI)

EPILOG_HEAD = """stage kinds (what each trains, and from what):
{kinds}

Every stage writes RUN/STAGE/{{log.jsonl, loss.png, checkpoints/, final/}}; `final` is a
transformers checkpoint folder. A stage resumes from its last checkpoint (weights,
optimizer, RNG, data position) when run again, and is skipped once finished (--fresh
starts it over). Multi-process: accelerate launch [--config_file
training/accelerate/{{ddp,fsdp,zero2,zero3}}.yaml] -m edge train STAGE --recipe R.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from training.stages import help_text

    p = sub.add_parser(
        "train",
        help="train perception / reasoning stages from a recipe; rebuild the default bundle",
        description="Train the perception VLM (projector alignment, visual instruction tuning, "
        "captioning or visual-extraction post-training) and the reasoning LLM (SFT on thinking "
        "traces) from a recipe file, or regenerate the shipped default bundle from scratch.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG_HEAD.format(kinds=help_text()),
    )
    p.add_argument("stage", metavar="STAGE",
                   help="a stage name from the recipe, 'all' (every stage in order), 'list', or "
                   "'default-bundle'")
    p.add_argument("--recipe", type=Path, help="recipe file (YAML or JSON; see training/recipes/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field, e.g. stages.align.steps=10 (repeatable)")
    p.add_argument("--fresh", action="store_true", help="discard the stage's checkpoints and start over")
    p.add_argument("--stop-at-step", type=int, metavar="N",
                   help="stop (with a checkpoint) after N steps; run again to continue")
    p.add_argument("--json", action="store_true", help="print results as JSON lines")
    g = p.add_argument_group("default-bundle options")
    g.add_argument("--out", type=Path, default=Path("runs/default-bundle"), metavar="DIR",
                   help="run folder for data, checkpoints, bundles, evaluation, results and the "
                   "finished bundle (DIR/bundle); a run continues where it stopped "
                   "(default: runs/default-bundle)")
    g.add_argument("--install", action="store_true",
                   help="also replace the shipped bundle (edge/assets/default_bundle) and the "
                   "checkout's docs/results with this run's")
    g.add_argument("--skip-baselines", action="store_true",
                   help="train and export the bundle only (no end-to-end / Caption+Think comparison)")
    g.add_argument("--eval-limit", type=int, help="evaluate on the first N test questions only")
    p.set_defaults(func=main)


def _is_main_process() -> bool:
    return os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) in ("0", "")


def require_train_extra() -> None:
    """One clear line naming the install command when the training stack is missing.

    (edge/extras.py, being written for every command, can replace this one check.)"""
    missing = [m for m in TRAIN_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise EdgeError(f"training needs {', '.join(missing)} (not installed): {TRAIN_INSTALL}")


def main(args: argparse.Namespace) -> int:
    require_train_extra()
    if args.stage == "default-bundle":
        return _default_bundle(args)
    if args.recipe is None:
        raise ConfigError("--recipe is required (see training/recipes/)")
    from training.config import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.stage == "list":
        return _list(recipe, args)
    if args.stage != "all":
        recipe.stage(args.stage)  # a clear error for an unknown stage name
    names = list(recipe.stages) if args.stage == "all" else [args.stage]
    if args.stop_at_step is not None and len(names) > 1:
        raise ConfigError("--stop-at-step applies to a single stage")
    from training.loop import train_stage

    main_proc = _is_main_process()
    for name in names:
        progress = ProgressPrinter(f"train {name}", enabled=main_proc and not args.quiet)
        result = train_stage(recipe, name, progress=progress, stop_at_step=args.stop_at_step,
                             fresh=args.fresh)
        if not main_proc:
            continue
        if args.json:
            print(json.dumps(asdict(result)))
            continue
        if result.skipped:
            progress.done(f"already finished: {result.final}")
            continue
        finished = "finished" if Path(result.final).is_dir() and args.stop_at_step is None else "stopped"
        loss = f"loss {result.first_loss:.4f} -> {result.last_loss:.4f}" if result.last_loss is not None else ""
        progress.done(f"{finished} at step {result.steps}, {loss}, {result.tokens:,} tokens; "
                      f"{result.final if finished == 'finished' else 'checkpoint saved'}")
    return 0


def _list(recipe, args: argparse.Namespace) -> int:
    from training.checkpoint import latest_checkpoint
    from training.model_init import resolve_init
    from training.stage_result import stage_summary
    from training.stages import trainable_parts

    rows = []
    for name, st in recipe.stages.items():
        done = stage_summary(recipe, name)
        latest = latest_checkpoint(recipe.stage_dir(name))
        status = ("done" if done and done.get("complete") else
                  f"at step {latest[1]['step']}" if latest else "not started")
        rows.append({"stage": name, "kind": st.kind, "trains": "+".join(trainable_parts(st)),
                     "init": resolve_init(recipe, name), "steps": st.steps or f"{st.epochs} epochs",
                     "status": status})
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(f"recipe {recipe.name}: {recipe.output_dir}")
        for r in rows:
            print(f"  {r['stage']:16s} {r['kind']:9s} trains {r['trains']:26s} from {r['init']:22s} "
                  f"{r['steps']!s:>8} steps  {r['status']}")
    return 0


def default_bundle_run(args: argparse.Namespace):
    """The regeneration the command line asks for: into the run folder; installed only on --install."""
    from edge.recipes.default_bundle.config import DefaultBundleRun

    return DefaultBundleRun(out=args.out, install=args.install, baselines=not args.skip_baselines,
                            eval_limit=args.eval_limit, overrides=tuple(args.overrides), fresh=args.fresh)


def _default_bundle(args: argparse.Namespace) -> int:
    from edge.recipes.default_bundle.run import regenerate

    progress = ProgressPrinter("default-bundle", enabled=not args.quiet)
    report = regenerate(default_bundle_run(args), progress=progress)
    where = f"installed at {report['installed']['bundle']}" if args.install else f"at {report['bundle']}"
    progress.done(f"bundle {where} in {report['seconds'] / 60:.1f} min")
    if args.json:
        print(json.dumps(report))
    elif report.get("table"):
        sys.stdout.write(report["table"])
    return 0
