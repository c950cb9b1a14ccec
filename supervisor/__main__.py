"""`python -m supervisor` is the `serve` command."""

from supervisor.cli import main

if __name__ == "__main__":
    main()
