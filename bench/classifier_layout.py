"""What the classifier's channels-last layout (aevae.classifier.for_scoring) buys, measured side by side.

    python bench/classifier_layout.py [--images 10000] [--repeats 5] [--data data/mnist]

Scores the first N test images with the trained classifier (models/classifier.pt) in the default
(contiguous) layout and in channels-last, alternating, under the stages' settings; prints the best
time of each, their ratio, and how far apart the features are.
"""

from __future__ import annotations

import argparse
import time

from aevae import classifier, config, data, runtime


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", default="data/mnist", help="folder with the four uncompressed IDX files")
    ap.add_argument("--model", default="models/classifier.pt")
    args = ap.parse_args()
    p = config.load()
    runtime.setup()
    import torch

    x, _ = data.load(args.data, "test", args.images)
    last = classifier.load(args.model)
    default = classifier.load(args.model).to(memory_format=torch.contiguous_format)
    best, feats = {}, {}
    for _ in range(args.repeats):
        for name, net in (("contiguous", default), ("channels-last", last)):
            start = time.perf_counter()
            feats[name] = classifier.classify(net, x)[0]
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}, {len(x)} images, best of {args.repeats}")
    for name, seconds in best.items():
        print(f"{name:>14} {seconds:.3f} s")
    print(f"channels-last / contiguous: {best['channels-last'] / best['contiguous']:.2f}x the time; features differ "
          f"by at most {(feats['channels-last'] - feats['contiguous']).abs().max().item():.1e}")


if __name__ == "__main__":
    main()
