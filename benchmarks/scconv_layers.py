"""SCConv's groups at a given scale: how many channels each GroupNorm group and each GWC group sees, layer by layer.

    python benchmarks/scconv_layers.py [yolov5-scconv-n.yaml] [--nc 5]
    python -m yolo_spd.markdown docs/evidence.md scconv-layers -- python benchmarks/scconv_layers.py

SCConv's SRU normalises with GroupNorm (eq. 1) and reads each channel's informativeness from its GroupNorm scale; its
CRU splits the channels (alpha = 1/2), squeezes each half by r = 2 and runs the upper half's 3x3 group-wise conv (GWC,
g = 2 groups). At scale n the channel counts are small, so these per-layer numbers show how narrow each part is. The
table is exact arithmetic from the built model (machine-independent); ``tests/test_docs.py`` checks the docs block.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rows(model_yaml: str, nc: int) -> list[list[object]]:
    from ultralytics.nn.tasks import DetectionModel

    import yolo_spd  # noqa: F401 - registers the modules
    from yolo_spd.modules.scconv import SCConv

    model = DetectionModel(model_yaml, nc=nc, verbose=False)
    out = []
    for name, module in model.named_modules():
        if isinstance(module, SCConv):
            gn, gwc = module.sru.gn, module.cru.gwc
            out.append([name.removeprefix("model."), gn.num_channels, gn.num_groups, gn.num_channels // gn.num_groups,
                        gwc.in_channels, gwc.groups, gwc.in_channels // gwc.groups, gwc.out_channels])
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="yolov5-scconv-n.yaml")
    parser.add_argument("--nc", type=int, default=80, help="classes (the groups do not depend on it)")
    args = parser.parse_args(argv)
    from yolo_spd.markdown import table

    headers = ["SCConv", "channels", "GroupNorm groups", "channels / GN group", "GWC in", "GWC groups",
               "GWC in / group", "GWC out"]
    print(table(headers, rows(args.model, args.nc)))


if __name__ == "__main__":
    main()
