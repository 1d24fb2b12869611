"""The ``synthetic`` dataset: generated images, so smoke tests need no files.

Each class gets a random smooth prototype image (a 4x4 pattern upsampled); an example is
its class prototype plus Gaussian noise, clipped to uint8. A small CNN learns it within a
few dozen steps, so a smoke run shows whether training works at all, not just whether it
runs.
"""

from __future__ import annotations

from typing import Any

from hairlab.errors import HairlabError


def make_tensors(*, num_classes: int, image_size: int, channels: int, count: int, noise: float,
                 seed: int, stream: int) -> tuple[Any, Any]:
    """``count`` examples; the same ``seed`` gives the same prototypes for every stream."""
    import torch

    # Smooth prototypes (a random 4x4 pattern, upsampled): each class differs in colour and
    # layout at a scale that survives the random crops, as classes of real images do.
    coarse = torch.randint(0, 256, (num_classes, channels, 4, 4),
                           generator=torch.Generator().manual_seed(seed)).to(torch.float32)
    protos = torch.nn.functional.interpolate(coarse, size=(image_size, image_size), mode="bilinear",
                                             align_corners=False)
    g = torch.Generator().manual_seed(seed * 1_000_003 + 1 + stream)
    labels = torch.arange(count) % num_classes
    labels = labels[torch.randperm(count, generator=g)]
    x = protos[labels]
    x += noise * torch.randn(x.shape, generator=g)
    return x.round_().clamp_(0, 255).to(torch.uint8), labels


def build(*, num_classes: int = 10, image_size: int = 32, channels: int = 3, root: Any = None,
          train_size: int | None = None, test_size: int | None = None, val_size: int | float = 0,
          num_train: int = 1024, num_test: int = 256, noise: float = 48.0, seed: int = 0,
          crop_padding: int = 4, hflip: bool = True, normalize: bool = True,
          mean: list[float] | None = None, std: list[float] | None = None) -> Any:
    """A :class:`~hairlab.data.tensor.TensorDataModule` of synthetic images (``root`` unused)."""
    from hairlab.data.tensor import TensorDataModule

    checks = (("num_classes", num_classes), ("image_size", image_size), ("channels", channels),
              ("num_train", num_train), ("num_test", num_test))
    for key, value in checks:
        low = 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise HairlabError(f"dataset.{key} must be an integer >= {low}, got {value!r}")
    if noise < 0:
        raise HairlabError(f"dataset.noise must be >= 0, got {noise!r}")
    common = dict(num_classes=num_classes, image_size=image_size, channels=channels, noise=float(noise),
                  seed=int(seed))
    train = make_tensors(count=num_train, stream=0, **common)
    test = make_tensors(count=num_test, stream=1, **common)
    return TensorDataModule(
        "synthetic", train=train, test=test, num_classes=num_classes, train_size=train_size,
        test_size=test_size, val_size=val_size, crop_padding=crop_padding, hflip=hflip,
        normalize=normalize, mean=mean, std=std,
        extra_info={"source": f"generated (seed {seed}, noise {noise})"},
    )
