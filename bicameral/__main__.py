"""``python -m bicameral`` runs the CLI."""

from bicameral.cli import main

if __name__ == "__main__":
    main()
