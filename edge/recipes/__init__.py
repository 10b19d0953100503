"""Recipes that span the whole chain: train -> export -> evaluate -> install.

They sit on top of every package (training, export, runtime, benchmarks): orchestration,
not training. `edge train default-bundle` runs `edge.recipes.default_bundle`.
"""
