"""The model and its training: config, modules, neighbours, the training loop, the run directory."""
