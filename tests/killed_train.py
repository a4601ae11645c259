"""``python killed_train.py N ARGS...``: ``ilif train ARGS...`` that ends abruptly (as if killed,
exit status 86) after N training batches; the resumption tests use it."""

from __future__ import annotations

import os
import sys

from ilif.cli import build_parser
from ilif.train.cli import train_command


class KillAfter:
    """A training callback that ends the process abruptly after ``batches`` backward passes."""

    def __init__(self, batches: int) -> None:
        self.batches, self.seen = batches, 0

    def on_after_backward(self, model, batch_idx: int) -> None:
        self.seen += 1
        if self.seen >= self.batches:
            os._exit(86)


if __name__ == "__main__":
    batches, argv = int(sys.argv[1]), sys.argv[2:]
    args = build_parser().parse_args(["train", *argv])
    sys.exit(train_command(args, (KillAfter(batches),)))
