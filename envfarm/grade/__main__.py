"""`python -m envfarm.grade`: see envfarm/grade/__init__.py."""

from envfarm.grade.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
