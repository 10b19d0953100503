"""The local web demo (`edge demo`): pick or drop an image, ask, watch the stages stream in."""
