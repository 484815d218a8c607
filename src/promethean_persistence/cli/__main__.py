"""``python -m promethean_persistence.cli``."""

from . import main

if __name__ == "__main__":
    main()
