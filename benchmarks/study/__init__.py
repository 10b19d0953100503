"""The downscaling study in a box: the paper's findings (a)-(d), reproduced or not, on micro models.

    from benchmarks.study import get_preset, run_study
    report = run_study(get_preset("smoke"), Path("runs/study-smoke"), progress=print)

Modules, in the order the work flows:

    presets     sizes, data, steps, item counts, budgets of smoke / laptop / gpu
    grid        the stages, systems and evaluation cells the findings need
    data        the training world, the held-out world's splits, tokenizer, shared tower
    jobs        the study as a job graph; what each job does; the time estimate
    scheduler   runs the graph on two processes, longest remaining path first
    evaluation  one cell through runtime.ExtractThink; cells read back as scored rows
    bootstrap   paired, clustered (by image), stratified (by split) bootstrap
    verdicts    findings (a)-(d): measures and verdict rules
    analysis    cells against baselines, then the findings
    report      study.md + study.json; figures: the paper's figure types as PNGs
    runner      run_study: all of it into one resumable folder

`edge study` (edge/commands/study.py) is the command; docs/study.md the laptop run's report.
"""

from benchmarks.study.presets import PRESETS, Preset, get_preset
from benchmarks.study.runner import run_study

__all__ = ["PRESETS", "Preset", "get_preset", "run_study"]
