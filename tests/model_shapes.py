"""Per-model test inputs shared by the model tests: (in_channels, image size) small enough for a
quick CPU forward of every registered model."""

SHAPES = {
    "resnet18": (3, 16),
    "resnet19": (3, 16),
    "vgg11": (2, 32),
    "cifar-small": (3, 32),
    "digits-small": (1, 8),
    "resnet34": (3, 32),
    "sew-resnet34": (3, 32),
}
