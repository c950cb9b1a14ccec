"""`python -m serve` is the `serve` command."""

from serve.supervisor.cli import main

if __name__ == "__main__":
    main()
