"""Real and synthetic image data: loaded once as uint8 tensors, batched and augmented on the device.

    ds = load_dataset(spec.data, seed=spec.train.seed)
    train = BatchLoader(ds.train_x, ds.train_y, batch_size=128, device="cpu",
                        mean=ds.mean, std=ds.std, augment=True, seed=spec.train.seed)
    for epoch in range(epochs):
        for images, labels in train.epoch(epoch): ...

Names are imported lazily: ``import dynds_core.data`` costs nothing until a name is used.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "DataError": "errors",
    "DataLimits": "limits",
    "DEFAULT_LIMITS": "limits",
    "data_policy": "limits",
    "Dataset": "base",
    "DEFAULT_DATA_ROOT": "base",
    "cache_root": "base",
    "channel_stats": "base",
    "load_dataset": "datasets",
    "BatchLoader": "loader",
    "PAD_MODES": "loader",
    "draw_crop_flip": "loader",
    "epoch_generator": "loader",
    "gather_crop_flip": "loader",
    "make_loaders": "loader",
    "normalize": "loader",
    "random_crop_flip": "loader",
    "stratified_subset": "subset",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'dynds_core.data' has no attribute {name!r}")
