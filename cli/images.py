"""`rdpipe eval` (rate–distortion of image codecs on a folder, e.g. Kodak) and
`rdpipe svd-report IMAGE` (singular-value plots and low-rank approximations of one image)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from cli.common import CliError

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
# Published Kodak R-D curves (sources cited in the file), drawn and BD-rated by `rdpipe eval`.
KODAK_REFERENCE = (Path(__file__).resolve().parents[1] / "benchmarks" / "reference"
                   / "kodak_published.json")


# --------------------------------------------------------------------------- train-images
def cmd_train_images(args) -> None:
    """`rdpipe train-images`: the older spelling of `rdpipe train bls2017`."""
    from cli.train import run_training  # pylint: disable=import-outside-toplevel
    options = dict(
        lmbda=args.lmbda, filters=args.filters, patch_size=args.patch_size,
        batch_size=args.batch_size, steps_per_epoch=args.steps_per_epoch, epochs=args.epochs,
        learning_rate=args.learning_rate, clipnorm=args.clipnorm,
        prior_lr_multiplier=args.prior_lr_multiplier, parameterization=args.parameterization,
        jit_compile=args.jit,
        precision_policy="mixed_bfloat16" if args.mixed_precision else "",
        channels=1 if args.grey else 3, coder=args.coder, train_dir=",".join(args.train_dir),
        init_from=args.init_from or "")
    run_training("bls2017", options, args.output or f"models/bls2017/lmbda_{args.lmbda:g}",
                 args.quiet)


# ---------------------------------------------------------------------------------- eval
def cmd_eval(args) -> None:
    from codec.eval import image_eval, rd_report  # pylint: disable=import-outside-toplevel
    from codec.eval import figures  # pylint: disable=import-outside-toplevel
    images = image_eval.load_images(args.images, args.limit)
    print(f"{len(images)} images from {args.images}", file=sys.stderr)
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    results = {}
    if args.models:
        models = _image_models(args.models)
        points = [image_eval.evaluate_model(m, images, progress=log) for m in models]
        results["rdpipe"] = {"points": [p._asdict() for p in points],
                             "front": [p._asdict() for p in image_eval.pareto_front(points)]}
    for codec in args.codec:
        points = image_eval.evaluate(codec, images, progress=log)
        results[codec] = {"points": [p._asdict() for p in points],
                          "front": [p._asdict() for p in image_eval.pareto_front(points)]}
    reference = _reference_curves(args)
    report = {"images": str(args.images), "count": len(images),
              "units": {"bpp": "bits per pixel (actual bytes)", "psnr": "dB, RGB, peak 255",
                        "ms_ssim": "tf.image.ssim_multiscale (linear); BD-rate in dB",
                        "bd_rate": "percent, negative = rdpipe needs fewer bits"},
              "codecs": results}
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    test = args.bd_codec or ("rdpipe" if args.models else None)
    if test is not None:
        if test not in results:
            raise CliError(f"--bd-codec {test}: not among the evaluated codecs "
                           f"{sorted(results)}")
        curves = {codec: result["front"] for codec, result in results.items() if codec != test}
        bd_psnr, bd_ssim, overlap = rd_report.bd_rate_table(results[test]["points"],
                                                            {**curves, **reference})
        report.update(bd_rate_of=test, bd_rate_psnr=bd_psnr, bd_rate_ms_ssim=bd_ssim,
                      bd_rate_psnr_interval_db=overlap)
        table = rd_report.markdown_report(bd_psnr, bd_ssim, results[test]["points"], overlap,
                                          name=test)
        output.with_suffix(".md").write_text(table)
        print(table)
    output.write_text(json.dumps(report, indent=2) + "\n")
    figures.image_rd_plot({codec: result["front"] for codec, result in results.items()},
                          output.with_suffix(".png"), reference,
                          title=f"{len(images)} images from {Path(args.images).name}")
    written = [output, output.with_suffix(".png")] + ([output.with_suffix(".md")]
                                                      if test else [])
    print("wrote " + ", ".join(map(str, written)))


def _image_models(models: list[str]) -> list[str]:
    """`--models` (dirs, zoo names or λ) → model dirs. `eval` measures any-size image codecs on
    a folder of photos; a fixed-size model (MNIST) is a clear error pointing at the command that
    evaluates it."""
    from codec.saved_codec import SavedCodec  # pylint: disable=import-outside-toplevel
    from codec.zoo import resolve_model  # pylint: disable=import-outside-toplevel
    paths = [str(resolve_model(model)) for model in models]
    for model, path in zip(models, paths):
        codec = SavedCodec(path)
        if codec.fixed_size is not None:
            raise CliError(f"{model} codes only {codec.fixed_size[0]}×{codec.fixed_size[1]} "
                           "images (an MNIST model): `rdpipe figure rd --models …` evaluates "
                           "it on the MNIST test split")
    return paths


def _reference_curves(args) -> dict:
    """Published curves to compare with: `--reference FILE`, or the Kodak curves when the
    images are the Kodak set (they mean nothing on other images); `--reference none`: none."""
    from codec.eval import rd_report  # pylint: disable=import-outside-toplevel
    if getattr(args, "reference", None) == "none":
        return {}
    if getattr(args, "reference", None):
        path = Path(args.reference)
    elif Path(args.images).resolve() == KODAK.resolve():
        path = KODAK_REFERENCE
    else:
        return {}
    if not path.is_file():
        raise CliError(f"--reference {path}: no such file")
    return rd_report.load_published_curves(path)


# ---------------------------------------------------------------------------- svd
def cmd_svd(args) -> None:
    """`rdpipe svd INPUT`: low-rank approximations chosen by rank, compression factor or energy
    factor, with figures and JSON (codec/eval/svd_report.py)."""
    from codec.eval.svd_report import Choice, write_report  # pylint: disable=import-outside-toplevel
    choices = ([Choice("rank", r) for r in args.rank or []]
               + [Choice("compression", c) for c in args.compression_factor or []]
               + [Choice("energy", e) for e in args.energy_factor or []])
    if not choices:
        choices = [Choice("rank", r) for r in (5, 20, 50)]
    for choice in choices:
        if choice.mode != "rank" and not 0 < choice.value <= 1:
            flag = {"compression": "--compression-factor", "energy": "--energy-factor"}
            raise CliError(f"{flag[choice.mode]} must be in (0, 1], got {choice.value:g}")
    report = write_report(Path(args.input), choices, Path(args.output_dir))
    for row in report["approximations"]:
        print(f"{row['choice']}: rank {row['rank']} of {min(report['height'], report['width'])}, "
              f"compression factor {row['compression_factor']:.3f}, energy factor "
              f"{row['energy_factor']:.3f}, PSNR {row['psnr_db'] or float('inf'):.2f} dB → "
              f"{row['output']}")
    print("figures: " + ", ".join(report["figures"]) + f"; numbers: {args.output_dir}/"
          f"{Path(args.input).stem}_svd.json")


def add_svd_parser(sub, name: str, help_text: str) -> None:
    p = sub.add_parser(
        name, help=help_text,
        description="Low-rank approximations of an image (PNG/JPEG/…; colour kept per channel, "
                    "greyscale as one channel) or a plain matrix (2-D .npy) by the truncated "
                    "SVD. Choose ranks directly or by factor; each choice writes "
                    "<stem>_<choice>.png (.npy for matrices), e.g. photo_rank50.png, "
                    "photo_cf0.15.png, photo_ef0.9.png, plus <stem>_spectrum.png (singular "
                    "values, cumulative energy, compression factor vs rank), "
                    "<stem>_approximations.png (original / approximation / |error| with its "
                    "colour scale) and <stem>_svd.json (rank, factors, stored numbers, the "
                    "measured error of each written output and the exact-SVD optimum).")
    p.add_argument("input", help="image file or 2-D .npy matrix")
    p.add_argument("--rank", "--ranks", type=int, nargs="+", metavar="R",
                   help="rank(s) r: keep the r largest singular values per channel")
    p.add_argument("--compression-factor", type=float, nargs="+", metavar="C",
                   help="in (0, 1]: the largest rank whose factors take at most C × the "
                        "numbers of the input (r·(m+n+1) ≤ C·m·n)")
    p.add_argument("--energy-factor", type=float, nargs="+", metavar="E",
                   help="in (0, 1]: the smallest rank whose singular values sum to at least "
                        "E × their total (mean over colour channels)")
    p.add_argument("--output-dir", default="svd-report")
    p.set_defaults(func=cmd_svd)


def add_image_parsers(sub) -> None:
    p = sub.add_parser("eval", help="rate–distortion of image codecs (svd, jpeg, jpeg2000, webp, "
                                    "avif) on a folder of images (default: Kodak)")
    p.add_argument("--codec", nargs="+", default=["svd", "jpeg", "jpeg2000"],
                   choices=["svd", "jpeg", "jpeg2000", "webp", "avif"])
    p.add_argument("--models", nargs="*", default=[],
                   help="exported image-codec SavedModels (e.g. one per λ) to evaluate")
    p.add_argument("--images", default=str(KODAK))
    p.add_argument("--limit", type=int, default=None, help="first N images only")
    p.add_argument("--output", default="eval/rd.json",
                   help="JSON; the R-D plot (.png) and, with --models, the BD-rate table "
                        "(.md) are written beside it")
    p.add_argument("--bd-codec", help="the curve whose BD-rate against all others is "
                                      "tabulated (default: rdpipe when --models is given)")
    p.add_argument("--reference", help="published curves (JSON like benchmarks/reference/"
                                       "kodak_published.json); default: those for Kodak when "
                                       "--images is Kodak; 'none' to skip")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train-images", help="train the Ballé 2017 image codec on a folder "
                                            "(random crops), one λ")
    p.add_argument("--train-dir", nargs="+", metavar="DIR",
                   default=[str(KODAK.parent / "photos-train"),
                            str(KODAK.parent / "photos-train-extra")],
                   help="training image folder(s) (default: photos-train and "
                        "photos-train-extra)")
    p.add_argument("--lmbda", type=float, default=.01, help="loss = bpp + λ·MSE (0–255 pixels)")
    p.add_argument("--filters", type=int, default=128)
    p.add_argument("--patch-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps-per-epoch", type=int, default=200)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--learning-rate", type=float, default=2e-4)
    p.add_argument("--clipnorm", type=float, default=1.0, help="global gradient-norm clip (0: off)")
    p.add_argument("--prior-lr-multiplier", type=float, default=10.,
                   help="the prior's learning rate relative to --learning-rate")
    p.add_argument("--parameterization", choices=["rdft", "plain"], default="rdft",
                   help="conv kernels trained as RDFT coefficients (TFC's default) or plain")
    p.add_argument("--jit", action="store_true", help="XLA-compile the train step")
    p.add_argument("--mixed-precision", action="store_true",
                   help="transforms in bfloat16 (GPU / AVX512-BF16 CPU); variables float32")
    p.add_argument("--grey", action="store_true", help="train on greyscale images")
    p.add_argument("--coder", default="portable", choices=["portable", "tfc"])
    p.add_argument("--output", help="output dir (default models/bls2017/lmbda_<λ>)")
    p.add_argument("--init-from", metavar="MODEL_DIR",
                   help="warm start: initialize from another trained model's output dir "
                        "(e.g. another λ); ignored when --output already has checkpoints")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train_images)

    add_svd_parser(sub, "svd", "low-rank approximations of an image or matrix by rank, "
                               "compression or energy factor, with plots")
    add_svd_parser(sub, "svd-report", "older name of `rdpipe svd`")
