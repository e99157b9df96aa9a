"""mambaprof: component-level profiling of selective state-space models (Mamba-1, Mamba-2, hybrids).

Data flows one way: model -> collectors -> Parquet run directory -> reports.
"""

__version__ = "0.1.0"
