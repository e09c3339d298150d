"""One module per asset group; the module name is the group name."""

import warnings

import dagster as dg

# `backfill_policy` on @asset is beta in Dagster 1.13. The usage and lifecycle groups use it on
# purpose (a backfill range is one run), so that BetaWarning, and only it, is not shown at import.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message="Parameter `backfill_policy`")
