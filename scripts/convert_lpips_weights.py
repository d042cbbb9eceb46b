"""Convert the published LPIPS weights to the safetensors files dragdiff.eval.lpips reads (run once, offline).

    python scripts/convert_lpips_weights.py alexnet-owt-7be5be79.pth alex.pth --out ~/.cache/dragdiff/lpips

alexnet-owt-7be5be79.pth: torchvision's ImageNet AlexNet; alex.pth: lpips v0.1's linear layers (in the lpips
package, lpips/weights/v0.1/alex.pth). Both are read with torch.load(weights_only=True): tensors only.
"""

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("alexnet", type=Path)
    parser.add_argument("lpips_linear", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    alexnet = torch.load(args.alexnet, map_location="cpu", weights_only=True)
    features = {k: v.contiguous() for k, v in alexnet.items() if k.startswith("features.")}
    linear = torch.load(args.lpips_linear, map_location="cpu", weights_only=True)
    save_file(features, args.out / "alexnet.safetensors")
    save_file({k: v.contiguous() for k, v in linear.items()}, args.out / "lpips_alex_v0.1.safetensors")
    print(f"wrote {args.out / 'alexnet.safetensors'} and {args.out / 'lpips_alex_v0.1.safetensors'}")


if __name__ == "__main__":
    main()
