"""`python -m spatial_mllm_ros` is the `spatial-mllm` CLI."""

import sys

from spatial_mllm_ros.cli import main

sys.exit(main())
