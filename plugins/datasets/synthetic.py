"""The ``synthetic`` dataset: generated images, so smoke tests need no files.

Each class gets a random smooth prototype image (a 4x4 pattern upsampled); an example is
its class prototype plus Gaussian noise, clipped to uint8. A small CNN learns it within a
few dozen steps, so a smoke run shows whether training works at all, not just whether it
runs.
"""

from __future__ import annotations

from typing import Any


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


def build(*, num_classes: int, image_size: int, channels: int, root: Any, train_size: int | None,
          test_size: int | None, val_size: int | float, num_train: int, num_test: int, noise: float, seed: int,
          crop_padding: int, pad_mode: str = "zeros", hflip: bool | str, cutout: int = 0, normalize: bool,
          mean: list[float] | None, std: list[float] | None) -> Any:
    """A :class:`~hairlab.data.tensor.TensorDataModule` of synthetic images (options: ``SyntheticOptions``)."""
    from hairlab.data.tensor import TensorDataModule

    common = dict(num_classes=num_classes, image_size=image_size, channels=channels, noise=float(noise),
                  seed=int(seed))
    train = make_tensors(count=num_train, stream=0, **common)
    test = make_tensors(count=num_test, stream=1, **common)
    return TensorDataModule(
        "synthetic", train=train, test=test, num_classes=num_classes, train_size=train_size,
        test_size=test_size, val_size=val_size, crop_padding=crop_padding, pad_mode=pad_mode, hflip=hflip,
        cutout=cutout, normalize=normalize, mean=mean, std=std,
        extra_info={"source": f"generated (seed {seed}, noise {noise}, {num_train} train / {num_test} test)"},
    )
