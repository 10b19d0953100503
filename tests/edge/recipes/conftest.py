"""The recipe tests train tiny models on the training tests' small synthetic dataset."""

from tests.training.conftest import synth_dir, synth_tokenizer_dir  # noqa: F401
