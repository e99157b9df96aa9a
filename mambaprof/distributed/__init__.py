"""Runs across torch.distributed ranks: where a rank is, launching N ranks, how ranks finish together, one rank's
trace and study. May import: run, model, collectors, storage and the top level; never cli, pruning or reports."""
