"""`python -m billing_pipelines.cli`: the `billing` command."""

import sys

from billing_pipelines.cli import main

sys.exit(main())
