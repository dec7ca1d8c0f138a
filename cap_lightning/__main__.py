"""``python -m cap_lightning fit --config experiments/sst2_ig.yaml`` (same as the ``lightning`` command)."""

from lmcore.cli import main

if __name__ == "__main__":
    main()
