"""`python -m mambaprof` (and `torchrun -m mambaprof`) runs the CLI."""

from mambaprof.cli import main

if __name__ == "__main__":
    main()
