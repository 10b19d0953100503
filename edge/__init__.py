"""The `edge` command line, device profiles, demos and the shipped default bundle."""
