"""Shared test settings: one torch thread (2-core machines; parallel processes each using both cores
slow down many times), and no run-time downloads."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
