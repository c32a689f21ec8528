"""Command line: `python -m faceaging {prepare,train,export,...}`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .ages import GROUP_LABELS, AgeGroup

DEFAULT_CACHE = Path("cache/utkface_128.npz")


UTKFACE = "../shared/data/utkface"
Handler = Callable[[argparse.Namespace], int]
Arguments = Callable[[argparse.ArgumentParser], None]
# name -> (help, the function that adds its arguments, the handler), in the order `--help` lists them
COMMANDS: dict[str, tuple[str, Arguments | None, Handler]] = {}


def _fail(message: str) -> int:
    """A sentence on stderr, the same way for every command, and the exit code for it."""
    print(f"faceaging: {message}", file=sys.stderr)
    return 2


def _command(name: str, help: str, arguments: Arguments | None) -> Callable[[Handler], Handler]:
    """Registers a subcommand's handler, with the function that adds its arguments beside it."""

    def register(handler: Handler) -> Handler:
        COMMANDS[name] = (help, arguments, handler)
        return handler

    return register


def _training_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The training set's arguments, shared by prepare and train."""
    parser.add_argument("--data", default=UTKFACE, help="UTKFace folder, or the wiki_crop folder")
    parser.add_argument("--landmarks", help="take landmarks from this CSV instead of running MTCNN")
    parser.add_argument("--wiki", action="store_true", help="--data is IMDB-WIKI's wiki_crop with wiki.mat")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    parser.add_argument("--limit", type=int)


@_command("prepare", help="align a training set into the tensor cache", arguments=_training_data_arguments)
def _prepare(args: argparse.Namespace) -> int:
    from .training.data import build_utkface, build_wiki

    if args.wiki:
        faces = build_wiki(args.data, limit=args.limit)
    else:
        faces = build_utkface(args.data, args.landmarks, limit=args.limit)
    faces.save(args.cache)
    print(f"{len(faces.names)} aligned faces -> {args.cache} ({int(faces.heldout.sum())} held out)")
    return 0


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    _training_data_arguments(parser)
    parser.add_argument("--out", default="runs/default")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ...")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument(
        "--max-minutes",
        type=float,
        help="stop (with a checkpoint) after this long; resume later",
    )


@_command("train", help="train the aging networks (builds the cache first if needed)", arguments=_train_arguments)
def _train(args: argparse.Namespace) -> int:
    from .training.data import FaceSet
    from .training.train import TrainConfig, train

    cache = Path(args.cache)
    if not cache.exists() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return _fail(f"no aligned cache at {cache}; build it first: python -m faceaging prepare")
    if not cache.exists():
        print(
            f"no aligned cache at {cache}: building it from {args.data}",
            file=sys.stderr,
        )
        _prepare(args)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    train(
        FaceSet.load(cache),
        args.out,
        config,
        args.device,
        args.resume,
        args.max_minutes,
    )
    return 0


def _train_probe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default="runs/v2")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--faces", type=int, default=9000, help="random training faces (each also augmented)")


@_command(
    "train-probe",
    help="fit the source-age probe on the identity network's features (~4 min on 2 cores)",
    arguments=_train_probe_arguments,
)
def _train_probe(args: argparse.Namespace) -> int:
    from .training.data import FaceSet
    from .training.train import train_age_probe

    accuracy = train_age_probe(FaceSet.load(args.cache), args.run, args.steps, args.faces)
    print(f"age probe written into {args.run}/checkpoint.pt; tuning-slice accuracy {accuracy:.1%}")
    return 0


def _age_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("photos", nargs="+", metavar="photo", help="a photo, a folder of photos, or a glob pattern")
    parser.add_argument(
        "--out", required=True, help="folder for the results (one subfolder per photo when several) and manifest.jsonl"
    )
    parser.add_argument("--workers", type=int, default=1, help="processes, each loading the models once")
    parser.add_argument(
        "--source-group",
        choices=GROUP_LABELS,
        help="the age group the people in the photos are in (default: estimated per face); changes start there",
    )
    parser.add_argument("--weights", help="weights folder or Hub repo owner/name[@revision] (default: bundled)")
    parser.add_argument("--steps", type=int, default=10, help="identity optimisation steps (0: the encoder's z0 only)")
    parser.add_argument("--device", default="auto")


@_command(
    "age", help="age every face in photos (files, folders, glob patterns) to the six groups", arguments=_age_arguments
)
def _age(args: argparse.Namespace) -> int:
    """Age each photo (files, folders, globs) into OUT/<photo name>/, with --workers processes;
    a bad photo gets a sentence and the rest go on; a second run skips what the manifest holds."""
    from .batch import age_photos, find_photos
    from .weights import WeightsError, resolve_weights

    try:
        weights = str(resolve_weights(args.weights))
    except WeightsError as err:
        return _fail(str(err))
    photos = find_photos(args.photos)
    aged = failed = 0
    run = age_photos(photos, Path(args.out), weights, args.workers, args.device, args.steps, args.source_group)
    for summary in run:
        if "error" in summary:
            print(f"faceaging: {summary['photo']}: {summary['error']}", file=sys.stderr, flush=True)
            failed += 1
        else:
            print(json.dumps(summary), flush=True)
            aged += 1
    if len(photos) > 1:
        earlier = len(photos) - aged - failed
        print(
            f"faceaging: {aged} aged, {failed} could not be aged, {earlier} done by an earlier run "
            f"(see {Path(args.out) / 'manifest.jsonl'})",
            file=sys.stderr,
        )
    return 2 if failed else 0


def _age_position(text: str) -> float:
    try:
        return AgeGroup.position(text)
    except ValueError as err:  # argparse shows the sentence of an ArgumentTypeError only
        raise argparse.ArgumentTypeError(str(err)) from None


def _age_video_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="an MP4, WebM or MOV file (at most 60 s, 200 MB, 1920 px)")
    parser.add_argument("--age", type=_age_position, required=True, help="a group (0-18 ... 60+) or a position 0-5")
    parser.add_argument("--out", required=True, help="the aged MP4 (H.264, the input's frame rate and audio)")
    parser.add_argument(
        "--source-group", choices=GROUP_LABELS, help="the age group the people are in (default: estimated)"
    )
    parser.add_argument("--weights", help="weights folder or Hub repo owner/name[@revision] (default: bundled)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


@_command("age-video", help="age the faces in a video to one age (sound kept)", arguments=_age_video_arguments)
def _age_video(args: argparse.Namespace) -> int:
    """Age a video file to one age; a file that cannot be aged gets a sentence, not a traceback."""
    from tqdm import tqdm

    from .ager import FaceAger
    from .images import FaceAgingError
    from .video import age_video
    from .weights import WeightsError

    try:
        ager = FaceAger.from_pretrained(args.weights, device=args.device)
        with tqdm(unit="frame", desc="aging", disable=args.quiet) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            report = age_video(ager, args.video, args.out, args.age, args.source_group, progress)
    except (FaceAgingError, WeightsError) as err:
        return _fail(str(err))
    print(
        json.dumps(
            {
                "out": args.out,
                "frames": report.frames,
                "frame_rate": float(report.rate),
                "audio": report.has_audio,
                "size": list(report.size),
            }
        )
    )
    return 0


def _write_json(path: str, report: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2))


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--examples", default="examples")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--quick", action="store_true", help="one photo, one run: proves the benchmark works")
    parser.add_argument("--no-cold-start", action="store_true", help="skip starting app.py")
    parser.add_argument(
        "--live", action="store_true", help="the live path on a 640x480 clip made from an example, and a 5 s video"
    )
    parser.add_argument(
        "--batch",
        type=int,
        metavar="N",
        help="instead: photos per second of `age` over N photos made from the examples, 1 and 2 workers",
    )


@_command(
    "bench", help="time every stage on the example photos (medians, peak RSS, cold start)", arguments=_bench_arguments
)
def _bench(args: argparse.Namespace) -> int:
    from .evaluation.bench import bench, markdown_table
    from .images import photos_in

    photos = photos_in(args.examples)
    if args.batch:
        from .evaluation.bench import bench_batch

        report = bench_batch(photos, args.batch)
        print("| workers | seconds | photos per second | speed-up |\n|---|---|---|---|")
        for n, row in report["workers"].items():
            print(f"| {n} | {row['seconds']} | {row['photos_per_second']} | {row['speed_up']}x |")
        if args.json:
            _write_json(args.json, report)
        return 0
    if args.live:
        from .evaluation.live import bench_live
        from .evaluation.live import markdown_table as live_table

        report = bench_live(Path(args.examples))
        print(live_table(report))
        if args.json:
            _write_json(args.json, report)
        return 0
    if args.quick:
        photos = photos[:1]
    report = bench(photos, runs=1 if args.quick else args.runs, with_cold_start=not args.no_cold_start)
    print(markdown_table(report))
    if args.json:
        _write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


def _loadtest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=50, help="per client")
    parser.add_argument("--json", help="also write the figures here")


@_command("loadtest", help="concurrent gradio_client users against a live python app.py", arguments=_loadtest_arguments)
def _loadtest(args: argparse.Namespace) -> int:
    from .evaluation.load import load_test

    report = load_test(args.clients, args.requests)
    print(json.dumps(report, indent=2))
    if args.json:
        _write_json(args.json, report)
    return 1 if report["failures"] else 0


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=UTKFACE)
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--json", default="runs/evaluate.json")
    parser.add_argument("--weights")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--age-strength",
        type=float,
        nargs="+",
        metavar="S",
        help="override the default age strength: one value, or two (towards younger, towards older)",
    )
    parser.add_argument(
        "--colour-share",
        type=float,
        nargs="+",
        metavar="S",
        help="override the share of the age strength the prior's colour gets: one value, or two (younger, older)",
    )
    parser.add_argument(
        "--tuning", action="store_true", help="score the tuning slice of training faces instead of the held-out one"
    )
    parser.add_argument("--save-outputs", metavar="NPZ", help="keep the optimised outputs for compare-kid")
    parser.add_argument(
        "--realism", action="store_true", help="also train the realism judge's detectors (ROC AUC per group; minutes)"
    )


@_command("evaluate", help="identity and age figures on the held-out UTKFace slice", arguments=_evaluate_arguments)
def _evaluate(args: argparse.Namespace) -> int:
    from .evaluation.evaluate import evaluate, markdown_table, write_report

    grid = Path(args.json).with_suffix(".png")
    grid.parent.mkdir(parents=True, exist_ok=True)
    report = evaluate(
        args.data,
        args.limit,
        args.weights,
        args.steps,
        grid,
        age_strength=args.age_strength,
        colour_share=args.colour_share,
        tuning=args.tuning,
        outputs_path=args.save_outputs,
        realism=args.realism,
    )
    markdown = write_report(report, args.json)
    print(markdown_table(report))
    print(f"wrote {args.json}, {markdown} and {grid}")
    return 0


def _evaluate_photos_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a folder of photos (e.g. ../shared/examples-hd)")
    parser.add_argument("--json", default="runs/evaluate_photos.json")
    parser.add_argument("--weights")
    parser.add_argument("--device", default="auto")


@_command(
    "evaluate-photos",
    help="fine detail, identity, age, colour and background on whole output photos",
    arguments=_evaluate_photos_arguments,
)
def _evaluate_photos(args: argparse.Namespace) -> int:
    from .ager import FaceAger
    from .evaluation.photos import evaluate_photos, markdown_table

    if not Path(args.folder).is_dir():
        return _fail(f"{args.folder} is not a folder of photos")
    report = evaluate_photos(args.folder, FaceAger.from_pretrained(args.weights, device=args.device))
    print(markdown_table(report))
    _write_json(args.json, report)
    print(f"wrote {args.json}")
    return 0


def _saved_outputs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("new", help="outputs of the model in question (evaluate --save-outputs)")
    parser.add_argument("old", help="outputs of the model to compare with, on the same slice")
    parser.add_argument("--json")


@_command(
    "compare-realism",
    help="the realism judge on two models' saved evaluate outputs: AUC per group, paired difference (minutes)",
    arguments=_saved_outputs_arguments,
)
def _compare_realism(args: argparse.Namespace) -> int:
    from .evaluation.detector import VIEWS
    from .evaluation.evaluate import compare_realism

    def lines(rows: dict) -> list[str]:
        return [
            f"| {label} | {view} | {r['old']:.3f} | {r['new']:.3f} | {r['difference']:+.3f} "
            f"| [{r['low']:+.3f}, {r['high']:+.3f}] |"
            for label, row in rows.items()
            for view in VIEWS
            if (r := row[view])["difference"] is not None
        ]

    header = "| target | view | AUC old | new | new - old | 95% paired interval |\n|---|---|---|---|---|---|"
    return _compare(args, lambda: compare_realism(args.new, args.old), header, lines)


def _compare(args: argparse.Namespace, compute: Callable[[], dict], header: str, lines: Callable) -> int:
    """Two models' saved outputs compared: a table on stdout, the rows as JSON with --json."""
    try:
        rows = compute()
    except (OSError, ValueError, KeyError) as error:
        return _fail(str(error))
    print("\n".join([header, *lines(rows)]))
    if args.json:
        _write_json(args.json, rows)
    return 0


def _compare_kid_arguments(parser: argparse.ArgumentParser) -> None:
    _saved_outputs_arguments(parser)
    parser.add_argument("--weights", help="where the identity network comes from (default: bundled)")
    parser.add_argument("--resamples", type=int, default=1000)


@_command(
    "compare-kid",
    help="KID of two models' saved evaluate outputs, with a paired bootstrap interval",
    arguments=_compare_kid_arguments,
)
def _compare_kid(args: argparse.Namespace) -> int:
    from .evaluation.evaluate import compare_kid

    def lines(rows: dict) -> list[str]:
        out = []
        for label, r in rows.items():
            low, high = r["ci95"]
            m = {k: f"{v['luma']:.2f} / {v['chroma']:.2f}" for k, v in r["mottling"].items()}
            out.append(
                f"| {label} | {r['old']:.1f} | {r['new']:.1f} | {r['difference']:+.1f} | [{low:+.1f}, {high:+.1f}] "
                f"| {r['share_of_resamples_new_lower']:.0%} | {m['old']} | {m['new']} | {m['real']} |"
            )
        return out

    header = (
        "| target | KID x1000 old | new | new - old | 95% interval | resamples with new lower "
        "| mottling luma / chroma: old | new | real |\n|---|---|---|---|---|---|---|---|---|"
    )
    return _compare(args, lambda: compare_kid(args.new, args.old, args.weights, args.resamples), header, lines)


def _publish_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", required=True, help="owner/name")
    parser.add_argument("--weights", default="weights")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="list what would be uploaded")


@_command("publish", help="upload weights/ and its model card to a Hugging Face Hub repo", arguments=_publish_arguments)
def _publish(args: argparse.Namespace) -> int:
    from .weights import AGING_FILES, IDENTITY_FILE, MODEL_CARD

    folder = Path(args.weights)
    files = [name for name in (IDENTITY_FILE, *AGING_FILES, MODEL_CARD) if (folder / name).is_file()]
    missing = sorted({IDENTITY_FILE, *AGING_FILES, MODEL_CARD} - set(files))
    if missing:
        return _fail(f"{folder} lacks {', '.join(missing)}; nothing uploaded")
    if args.dry_run:
        for name in files:
            print(
                f"would upload {folder / name} -> {args.repo}/{name} ({(folder / name).stat().st_size / 2**20:.1f} MB)"
            )
        return 0
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(args.repo, repo_type="model", exist_ok=True, private=args.private)
    commit = api.upload_folder(repo_id=args.repo, folder_path=str(folder), allow_patterns=files)
    print(f"uploaded {len(files)} files to {args.repo}: {commit}")
    return 0


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default="runs/default")
    parser.add_argument("--out", default="weights")
    parser.add_argument("--fp32", action="store_true")
    parser.add_argument(
        "--prior-gains",
        type=float,
        nargs=3,
        metavar=("SHAPE", "TEXTURE", "COLOUR"),
        help="the prototype prior's gains in the exported generator (default: the tuned ones)",
    )


@_command("export", help="a training run's checkpoint -> weights/*.safetensors", arguments=_export_arguments)
def _export(args: argparse.Namespace) -> int:
    from .training.train import EXPORT_PRIOR_GAINS, export_weights

    gains = tuple(args.prior_gains or EXPORT_PRIOR_GAINS)
    try:
        written = export_weights(Path(args.run) / "checkpoint.pt", args.out, half=not args.fp32, prior_gains=gains)
    except ValueError as err:
        return _fail(str(err))
    for path in written:
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB)")
    return 0


def _convert_judges_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="weights")
    parser.add_argument(
        "--fp32",
        action="store_true",
        help="keep fp32 (default fp16, which passes parity)",
    )


@_command(
    "convert-judges",
    help="dlib's face-recognition .dat -> weights/*.safetensors (dev)",
    arguments=_convert_judges_arguments,
)
def _convert_judges(args: argparse.Namespace) -> int:
    from .convert import convert_identity

    out = convert_identity(args.out, half=not args.fp32)
    print(f"identity network -> {out}")
    return 0


def _fit_chip_template_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=UTKFACE)
    parser.add_argument("--every", type=int, default=20, help="use every Nth training file")


@_command(
    "fit-chip-template",
    help="fit MTCNN's landmarks to dlib's chip geometry (dev)",
    arguments=_fit_chip_template_arguments,
)
def _fit_chip_template(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from .convert import fit_chip_template
    from .detect import FaceDetector
    from .training.data import detect_centre_face, is_heldout

    files = [p for p in sorted(Path(args.data).glob("*.jpg"))[:: args.every] if not is_heldout(p.name)]
    detector = FaceDetector(min_face_size=60)
    items = []
    for start in range(0, len(files), 32):
        images = [np.asarray(Image.open(p).convert("RGB")) for p in files[start : start + 32]]
        items += [
            (im, pts) for im, pts in zip(images, detect_centre_face(detector, images), strict=True) if pts is not None
        ]
    template, count = fit_chip_template(items)
    print(f"MTCNN landmarks on dlib's unit-square face, fitted on {count} faces:")
    print(np.array2string(template, precision=4, suppress_small=True))
    return 0


def _check_judges_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=UTKFACE)
    parser.add_argument("--examples", default="examples")
    parser.add_argument("--limit", type=int, help="held-out UTKFace files to use (default: all)")
    parser.add_argument("--weights", default=None, help="weights folder or Hub repo (default: bundled)")
    parser.add_argument("--json")


@_command(
    "check-judges",
    help="identity parity with dlib, age judge error on held-out UTKFace",
    arguments=_check_judges_arguments,
)
def _check_judges(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .evaluation.judges import check_judges, heldout_utkface
    from .images import photos_in
    from .weights import load_identity

    photos = photos_in(args.examples)
    utkface = heldout_utkface(args.data, args.limit) if Path(args.data).is_dir() else []
    report = asdict(check_judges(load_identity(args.weights), photos, utkface))
    print(json.dumps(report, indent=2))
    if args.json:
        _write_json(args.json, report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faceaging", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help, arguments, handler) in COMMANDS.items():
        command = sub.add_parser(name, help=help)
        if arguments is not None:
            arguments(command)
        command.set_defaults(func=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
