"""``python -m magtrack_dask``: the ``magtrack-dask`` command."""

import sys

from magtrack_dask.cli import main

if __name__ == "__main__":
    sys.exit(main())
