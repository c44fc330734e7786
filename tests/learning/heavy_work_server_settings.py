"""The settings of the daphne that ``test_heavy_work_server.py`` starts: a small, known pool.

Two slots, one request may wait 2 s for a slot, and a 10 s deadline.
"""

from kbsite.settings import *  # noqa: F403

HEAVY_WORK_SLOTS = 2
HEAVY_WORK_QUEUE = 1
HEAVY_WORK_WAIT_S = 2.0
HEAVY_WORK_DEADLINE_S = 10.0
