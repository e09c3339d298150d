"""Named crash points for the crash-safety tests.

Setting ``ASSET_PIPELINE_CRASH_AT=<name>`` makes the process die (``os._exit``, no cleanup, like a
SIGKILL) the first time it reaches that point. Production runs never set it; the check is one dict
lookup.
"""

import os

CRASH_EXIT_CODE = 137


def failpoint(name: str) -> None:
    if os.environ.get("ASSET_PIPELINE_CRASH_AT") == name:
        os._exit(CRASH_EXIT_CODE)
