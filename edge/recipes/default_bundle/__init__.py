"""Regenerate the shipped default bundle from scratch: `edge train default-bundle`."""
