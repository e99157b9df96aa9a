"""The run: a sweep of points, each measured (timing, output check, profiler), markers installed around
components, the Triton autotune policy, the study. May import: model, collectors, storage and the top level;
never cli, distributed, pruning or reports."""
