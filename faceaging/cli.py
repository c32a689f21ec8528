"""Command line: `python -m faceaging {prepare,train,export,...}`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_CACHE = Path("cache/utkface_128.npz")


def _prepare(args: argparse.Namespace) -> int:
    from .training.data import build_utkface, build_wiki

    if args.wiki:
        faces = build_wiki(args.data, limit=args.limit)
    else:
        csv = Path(args.landmarks) if args.landmarks else Path(args.data).parent / "utkface_mtcnn.csv"
        faces = build_utkface(args.data, csv if csv.exists() else None, limit=args.limit)
    faces.save(args.cache)
    print(f"{len(faces.names)} aligned faces -> {args.cache} ({int(faces.heldout.sum())} held out)")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .training.data import FaceSet
    from .training.train import TrainConfig, train

    cache = Path(args.cache)
    if not cache.exists():
        print(f"no aligned cache at {cache}: building it from {args.data}", file=sys.stderr)
        _prepare(args)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    train(FaceSet.load(cache), args.out, config, args.device, args.resume, args.max_minutes)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faceaging", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    prep = sub.add_parser("prepare", help="align a training set into the tensor cache")
    train = sub.add_parser("train", help="train the aging networks (builds the cache first if needed)")
    for p in (prep, train):
        p.add_argument("--data", default="../shared/data/utkface", help="UTKFace folder, or the wiki_crop folder")
        p.add_argument("--landmarks", help="MTCNN landmark CSV (default: utkface_mtcnn.csv beside --data)")
        p.add_argument("--wiki", action="store_true", help="--data is IMDB-WIKI's wiki_crop with wiki.mat")
        p.add_argument("--cache", default=str(DEFAULT_CACHE))
        p.add_argument("--limit", type=int)
    prep.set_defaults(func=_prepare)
    train.add_argument("--out", default="runs/default")
    train.add_argument("--steps", type=int, default=6000)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ...")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this long; resume later")
    train.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
