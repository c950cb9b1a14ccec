"""`python -m serve.supervisor` is the `serve` command, as `python -m serve` is."""

from serve.supervisor.cli import main

if __name__ == "__main__":
    main()
