"""`python -m babysit` runs the command line."""

from babysit.cli import main

if __name__ == "__main__":
    main()
