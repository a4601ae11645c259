"""ImageNet-scale spiking ResNet-34s: Spiking ResNet (post-activation, the neuron after the
addition) and SEW-ResNet (spike-element-wise addition, Fang et al., NeurIPS 2021), with the
ImageNet stem and any neuron (docs/training.md gives the recipe)."""

from __future__ import annotations

from torch import Tensor, nn

from ilif.models.base import SpikingModel
from ilif.models.layers import TimeDistributed
from ilif.models.resnet import BasicBlock, MakeNeuron

RESNET34_BLOCKS = (3, 4, 6, 3)
RESNET34_WIDTHS = (64, 128, 256, 512)


def conv_bn(cin: int, cout: int, kernel: int, stride: int) -> TimeDistributed:
    """``BN(conv(x))`` per step, the conv without bias (padding ``kernel // 2``)."""
    return TimeDistributed(nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
    ))


class SEWBlock(nn.Module):
    """SEW basic block with ADD connection (Fang et al., 2021, Fig. 1c)::

    s = neuron(BN(conv(neuron(BN(conv(x))))));  y = s + shortcut(x)
    shortcut = x, or neuron(BN(conv1×1(x))) where the stride or the channel count changes.

    The block's output is a spike count (integer-valued, ``0 … 2`` after one block), not a
    spike: SEW keeps the identity mapping exact.
    """

    def __init__(self, cin: int, cout: int, stride: int, make_neuron: MakeNeuron) -> None:
        super().__init__()
        self.conv_bn1 = conv_bn(cin, cout, 3, stride)
        self.neuron1 = make_neuron()
        self.conv_bn2 = conv_bn(cout, cout, 3, 1)
        self.neuron2 = make_neuron()
        self.downsample = (
            nn.Sequential(conv_bn(cin, cout, 1, stride), make_neuron())
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        s = self.neuron2(self.conv_bn2(self.neuron1(self.conv_bn1(x))))
        return s + (x if self.downsample is None else self.downsample(x))


class ImageNetResNet(SpikingModel):
    """ResNet with the ImageNet stem: conv 7×7/2 (64) → BN → neuron → max-pool 3×3/2, four
    stages of ``blocks`` basic blocks of 64-128-256-512 channels (stride 2 from the second),
    global average pool → linear. On 224×224 input the stages see 56, 28, 14 and 7 pixels."""

    def __init__(self, block: type[nn.Module], blocks: tuple[int, ...], make_neuron: MakeNeuron,
                 num_classes: int, in_channels: int, T: int) -> None:
        super().__init__(T)
        self.stem = conv_bn(in_channels, 64, 7, 2)
        self.stem_neuron = make_neuron()
        self.pool = TimeDistributed(nn.MaxPool2d(3, stride=2, padding=1))
        layers, cin = [], 64
        for stage, (cout, count) in enumerate(zip(RESNET34_WIDTHS, blocks, strict=True)):
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(block(cin, cout, stride, make_neuron))
                cin = cout
        self.blocks = nn.Sequential(*layers)
        self.classifier = TimeDistributed(
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))
        )

    def forward_sequence(self, x_seq: Tensor) -> Tensor:
        x = self.pool(self.stem_neuron(self.stem(x_seq)))
        return self.classifier(self.blocks(x))


def resnet34(make_neuron, num_classes, in_channels, T) -> ImageNetResNet:
    """Spiking ResNet-34 (blocks [3, 4, 6, 3] of :class:`~ilif.models.resnet.BasicBlock`)."""
    return ImageNetResNet(BasicBlock, RESNET34_BLOCKS, make_neuron, num_classes, in_channels, T)


def sew_resnet34(make_neuron, num_classes, in_channels, T) -> ImageNetResNet:
    """SEW-ResNet-34 (blocks [3, 4, 6, 3] of :class:`SEWBlock`, ADD connections)."""
    return ImageNetResNet(SEWBlock, RESNET34_BLOCKS, make_neuron, num_classes, in_channels, T)
