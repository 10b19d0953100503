"""Regenerate the shipped default bundle from scratch: `edge train default-bundle`.

    1. data        the synthetic world (training.data.synth): train / val / held-out test /
                   in-distribution test splits, 96 px images                     (run.py)
    2. tokenizer   a ~2k byte-level BPE trained on the training split's text (Qwen3 specials)
    3. stages      training/recipes/default-bundle.yaml: vision -> align -> instruct -> extract,
                   the reasoner; with baselines also caption and e2e (same compute as extract)
    4. export      GGUF (q8_0) + ONNX (int8) bundles of each system                 (bundles.py)
    5. evaluate    the runtime's pipeline on the test splits: Extract+Think, Caption+Think,
                   the end-to-end baseline and chance, per category    (evaluate.py, scoring.py)
                   -> RUN/results/ (table, JSON, chart)                             (report.py)
    6. bundle      the Extract+Think bundle with example images and questions -> RUN/bundle
    7. install     only when asked (--install): RUN/bundle replaces edge/assets/default_bundle
                   and RUN/results the checkout's docs/results, each atomically     (install.py)

Everything is written into one run folder (RUN, default runs/default-bundle). Every step
is skipped when its output exists (stages resume from checkpoints), so an interrupted
regeneration continues where it stopped; `fresh` starts over.

Nothing here is imported by `training` or `export`: this recipe sits on top of them.
"""
