"""Engine tests run on one CPU thread (the machine is shared); Omniglot fixtures: tests/conftest.py."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
