"""Data for training and evaluation: the synthetic visual world, loaders for LLaVA-format and
MMStar-style data, and the visual-extraction pipeline. See docs/data.md.

Nothing here imports torch or transformers at module level: generating data and driving the
extraction pipeline against remote teachers works on a machine without them.
"""
