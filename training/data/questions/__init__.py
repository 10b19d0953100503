"""Questions about the synthetic world's scenes, one module per question family.

`registry.generate_questions` draws them; `training.data.targets` builds every training
target from a question's query with its family's `QueryRules` (`registry.QUERY_RULES`).
What a family defines: core.py. The families: registry.py.
"""
