"""`rdpipe` command line: train, compress, decompress, zoo, sample, digits, figure, demo,
pipeline, serve, client, audit-ops, eval, train-images, svd-report.

Run `rdpipe COMMAND --help` for the options of each command.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import warnings
from pathlib import Path

# Quiet TensorFlow's C++ start-up chatter and third-party deprecation noise before importing it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

from cli.common import CliError  # noqa: E402
from cli.images import add_image_parsers  # noqa: E402
from cli.photos import add_photo_parsers  # noqa: E402
from cli.serving import add_serving_parsers  # noqa: E402
from cli.train import add_train_parser, add_train_zoo_parser  # noqa: E402


# ------------------------------------------------------------------------ sample / figure
def cmd_sample(args) -> None:
    import numpy as np
    from codec.saved_codec import SavedCodec
    from codec.eval.figures import image_grid

    codec = SavedCodec(args.model)
    rng = np.random.default_rng(args.seed)
    # Random payloads under the model's own format byte: what an entropy decoder turns into
    # latents distributed (about) as the prior, which the synthesis maps to digits.
    strings = codec.random_strings(args.num, args.bytes, rng)
    images, ok = codec.decompress_with_status(strings)  # sanity check off: sampling
    distinct = len({image.tobytes() for image in images})
    path = image_grid(images, args.output, title=f"decoded from {args.bytes} random payload "
                                                 f"bytes each ({distinct} distinct)")
    print(f"{args.num} samples ({distinct} distinct, {int(ok.sum())} pass the end-of-stream "
          f"check) → {path}")


def cmd_digits(args) -> None:
    from PIL import Image

    from codec.data.datasets import mnist_arrays
    images, labels = mnist_arrays(args.split, data_dir=args.data_dir, mnist_dir=args.mnist_dir)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image[..., 0]).save(out / f"digit_{i:03d}_{label}.png")
    print(f"wrote {len(images)} digits ({args.split}) as 28×28 PNGs → {out}/")


def cmd_figure(args) -> None:
    from codec.data.datasets import mnist_arrays
    from codec.eval.evaluation import evaluate_codec
    from codec.saved_codec import SavedCodec, model_lambda
    from codec.eval import figures

    if args.kind in ("digits", "rd") and not args.models:
        raise CliError(f"figure {args.kind} needs --models")
    if args.kind == "prior":
        path = figures.prior_figure(args.output)
    elif args.kind == "spectrum-fit":
        import numpy as np
        from codec.layers.spectral import fit_spectrum
        target = np.array(args.eigenvalues)
        fits = [(seed, fit_spectrum(target, seed=seed, tolerance=1e-6)) for seed in
                range(args.starts)]
        for seed, fit in fits:
            print(f"start {seed}: {fit.steps} steps, loss {fit.loss:.2e}, eigenvalues "
                  + " ".join(f"{e:.4f}" for e in fit.eigenvalues))
        path = figures.spectrum_fit_figure(fits, target, args.output)
    elif args.kind == "svd-matrix":
        import numpy as np
        from codec.eval.svd_report import Choice, write_report
        source = Path(args.matrix) if args.matrix else Path(args.output).with_suffix(".npy")
        if not args.matrix:   # a 96×64 matrix of rank 6 plus a little noise
            rng = np.random.default_rng(0)
            matrix = rng.normal(size=(96, 6)) @ rng.normal(size=(6, 64)) \
                + .05 * rng.normal(size=(96, 64))
            source.parent.mkdir(parents=True, exist_ok=True)
            np.save(source, matrix)
        report = write_report(source, [Choice("rank", r) for r in args.ranks],
                              Path(args.output).parent)
        path = ", ".join(report["figures"])
    elif args.kind == "digits":
        codec = SavedCodec(args.models[0])
        originals, _ = mnist_arrays(args.split, args.data_dir, args.mnist_dir)
        originals = originals[:16]
        strings, info = codec.compress(originals)
        path = figures.digit_grid(originals, strings, info, codec.decompress(strings),
                                  args.output, title=_model_title(Path(args.models[0])))
    else:
        images, _ = mnist_arrays(args.split, args.data_dir, args.mnist_dir)
        points = []
        for model in args.models:
            result = evaluate_codec(SavedCodec(model), images)
            lmbda = model_lambda(model)
            points.append({"lambda": lmbda, **{k: result[k] for k in
                           ("bits_per_digit", "information_bits", "mae")}})
            print(f"{model}: {result['bits_per_digit']:.2f} bits coded, "
                  f"{result['information_bits']:.2f} information, MAE {result['mae']:.4f}")
        path = figures.rd_plot(points, args.output)
    print(f"figure → {path}")


def _model_title(model_dir: Path) -> str:
    """"λ=500 (mnist_l500, version 3)" for a pushed model, "λ=2000 (lmbda_2000)" for a
    trained one; the directory name alone when λ is unknown."""
    import math

    from codec.saved_codec import model_lambda
    lmbda = model_lambda(model_dir)
    if math.isnan(lmbda):
        return model_dir.name
    if model_dir.name.isdigit():
        return f"λ={lmbda:g} ({model_dir.parent.name}, version {model_dir.name})"
    return f"λ={lmbda:g} ({model_dir.name})"


# ----------------------------------------------------------------------------------- demo
def cmd_demo(args) -> None:
    """Quick end-to-end run: train a small codec, compress and decompress test digits."""
    import numpy as np
    from codec.data.datasets import mnist_arrays
    from codec.eval.evaluation import coded_bits, mean_absolute_error
    from codec.models.mnist_train import MnistTrainConfig, train_mnist
    from codec.saved_codec import SavedCodec
    from codec.eval.figures import digit_grid

    output = Path(args.output)
    config = MnistTrainConfig(lmbda=args.lmbda, epochs=args.epochs,
                              train_split=args.train_split, verbose=2,
                              validation_split="test[:1000]")
    print(f"[1/3] training a quick MNIST codec (λ={args.lmbda:g}, {args.epochs} epochs on "
          f"{args.train_split}) → {output}")
    t0 = time.perf_counter()
    train_mnist(config, output)
    print(f"      trained in {time.perf_counter() - t0:.0f} s")
    codec = SavedCodec(output)
    digits, labels = mnist_arrays("test[:16]")
    print("[2/3] compressing 16 test digits to byte strings")
    strings, info = codec.compress(digits)
    print("[3/3] decompressing them")
    recon = codec.decompress(strings)
    print(f"\n{'#':>2} {'label':>5} {'string (hex)':<24} {'bits':>5} {'info':>6} {'MAE':>7}")
    for i, (s, b) in enumerate(zip(strings, info)):
        mae = mean_absolute_error(digits[i], recon[i])
        print(f"{i:>2} {labels[i]:>5} {s.hex():<24.24} {8 * len(s):>5} {b:>6.1f} {mae:>7.4f}")
    bits = coded_bits(strings)
    print(f"\nmean: {bits.mean():.1f} bits/digit coded ({info.mean():.1f} information content), "
          f"MAE {mean_absolute_error(digits, recon):.4f}; raw digit = {28 * 28 * 8} bits")
    figure = digit_grid(digits, strings, info, recon, output / "digits.png",
                        title=f"λ={args.lmbda:g}, quick demo")
    print(f"figure → {figure}")
    if not np.array_equal(codec.decompress(strings), recon):
        raise CliError("decoding is not deterministic")


# ------------------------------------------------------------------------------- pipeline
def _pipeline_config(args):
    from pipelines.configs import get_config

    overrides = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--set takes key=value, got {item!r}")
        overrides[key] = value
    config = get_config(args.config).with_overrides(**overrides)
    if args.lmbda:
        chosen = [spec for spec in config.lambdas if spec.lmbda in args.lmbda]
        unknown = sorted(set(args.lmbda) - {spec.lmbda for spec in chosen})
        if unknown:
            raise CliError(f"--lambda {unknown[0]:g} is not an operating point of "
                           f"{config.name}; it has {[s.lmbda for s in config.lambdas]}")
        config = dataclasses.replace(config, lambdas=tuple(chosen))
    return config


def cmd_pipeline_compile_kubeflow(args) -> None:
    from pipelines.kubeflow import compile_kubeflow

    for path in compile_kubeflow(_pipeline_config(args), args.output_dir, args.image, args.cron):
        print(f"wrote {path}")


def cmd_pipeline_schedule(args) -> None:
    from pipelines.scheduler import schedule_local

    runs = schedule_local(_pipeline_config(args), args.cron, beam_args=args.beam_arg or None,
                          max_runs=args.max_runs, run_now=args.run_now)
    print(f"scheduler stopped after {runs} run(s)")


def cmd_pipeline_run(args) -> None:
    from pipelines.runner import format_summary, run_local

    config = _pipeline_config(args)
    print(f"running pipeline {config.name}: λ {[s.lmbda for s in config.lambdas]}, "
          f"{config.epochs} epoch(s); workspace {config.workspace}; serving {config.serving_dir}")
    summary = run_local(config, beam_args=args.beam_arg or None)
    print(format_summary(summary))


# ---------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rdpipe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data-dir", help="TFDS data dir (default $TFDS_DATA_DIR or "
                                         "~/tensorflow_datasets)")
    data.add_argument("--mnist-dir", help="directory with the four MNIST IDX files "
                                          "(default $RDPIPE_MNIST_DIR, ../shared/data/mnist)")

    add_train_parser(sub)
    add_train_zoo_parser(sub)

    p = sub.add_parser("sample", help="decode random bytes: the decoder as a generative model")
    p.add_argument("--model", required=True)
    p.add_argument("-n", "--num", type=int, default=16)
    p.add_argument("--bytes", type=int, default=8,
                   help="random payload bytes per sample (after the model's format byte)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--output", default="samples.png")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("digits", parents=[data], help="write MNIST digits as PNG files")
    p.add_argument("--split", default="test[:4]", help="TFDS split slice")
    p.add_argument("--output-dir", default="digits")
    p.set_defaults(func=cmd_digits)

    p = sub.add_parser("figure", parents=[data],
                       help="digit grid, R-D plot, prior densities, spectrum fit, SVD of a "
                            "matrix (PNG)")
    p.add_argument("kind", choices=["digits", "rd", "prior", "spectrum-fit", "svd-matrix"],
                   help="digits: originals, codes and reconstructions of one model; rd: "
                        "rate–distortion of several; prior: the noisy-logistic prior at "
                        "several scales; spectrum-fit: fitting a symmetric matrix to "
                        "--eigenvalues through eigh, from --starts random starts; svd-matrix: "
                        "singular values and A / A_r / |A − A_r| of --matrix (default: a "
                        "noisy rank-6 matrix)")
    p.add_argument("--models", nargs="+", help="digits: one model; rd: one or more")
    p.add_argument("--eigenvalues", type=float, nargs="+", default=[-1., .5, 2., 3.],
                   help="spectrum-fit: target eigenvalues")
    p.add_argument("--starts", type=int, default=4, help="spectrum-fit: random starts")
    p.add_argument("--matrix", help="svd-matrix: a 2-D .npy matrix")
    p.add_argument("--ranks", type=int, nargs="+", default=[2, 6],
                   help="svd-matrix: ranks to show")
    p.add_argument("--split", default=None, help="TFDS split (digits: test[48:64], "
                                                 "rd: test)")
    p.add_argument("--output", default=None)
    p.set_defaults(func=cmd_figure)

    p = sub.add_parser("pipeline", help="the TFX pipeline")
    pipeline_sub = p.add_subparsers(dest="pipeline_command", required=True)
    config_args = argparse.ArgumentParser(add_help=False)
    config_args.add_argument("--config", default="mnist-quick",
                             help="mnist | mnist-quick | images | images-quick")
    config_args.add_argument("--set", action="append", metavar="KEY=VALUE",
                             help="override a scalar config field, e.g. --set epochs=3")
    config_args.add_argument("--lambda", dest="lmbda", action="append", type=float,
                             metavar="λ", help="only this operating point of the config "
                                               "(repeatable; default: all)")
    beam = argparse.ArgumentParser(add_help=False)
    beam.add_argument("--beam-arg", action="append", metavar="FLAG",
                      help="Beam flag passed through, e.g. --beam-arg=--runner=FlinkRunner")
    p = pipeline_sub.add_parser("run", parents=[config_args, beam],
                                help="run locally: LocalDagRunner, Beam, SQLite MLMD")
    p.set_defaults(func=cmd_pipeline_run)
    p = pipeline_sub.add_parser("schedule", parents=[config_args, beam],
                                help="run on a cron schedule (APScheduler), gated as usual")
    p.add_argument("--cron", required=True, help='crontab, e.g. "0 3 * * *" (local time)')
    p.add_argument("--max-runs", type=int, default=None, help="stop after N runs")
    p.add_argument("--run-now", action="store_true", help="also run once immediately")
    p.set_defaults(func=cmd_pipeline_schedule)
    p = pipeline_sub.add_parser("compile-kubeflow", parents=[config_args],
                                help="write the Kubeflow Pipelines V2 spec (+ recurring run)")
    p.add_argument("--output-dir", default="workspace/kubeflow")
    p.add_argument("--image", default="rdpipe:latest",
                   help="container image with rdpipe installed, used by every step")
    p.add_argument("--cron", help="also write recurring-run settings for this crontab")
    p.set_defaults(func=cmd_pipeline_compile_kubeflow)

    add_photo_parsers(sub)
    add_serving_parsers(sub)
    add_image_parsers(sub)

    p = sub.add_parser("demo", help="quick train + compress/decompress without the pipeline")
    p.add_argument("--lambda", dest="lmbda", type=float, default=2000.)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-split", default="train")
    p.add_argument("--output", default="workspace/demo/mnist_lmbda_2000")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    if args.command == "figure":
        args.split = args.split or ("test[48:64]" if args.kind == "digits" else "test")
        args.output = args.output or f"{args.kind}.png"
        if args.kind == "spectrum-fit" and not 1 <= args.starts <= 20:
            print("rdpipe: error: --starts must be in [1, 20]", file=sys.stderr)
            return 2
    if getattr(args, "num", 1) < 1 or getattr(args, "bytes", 1) < 0:
        print("rdpipe: error: --num must be ≥ 1 and --bytes ≥ 0", file=sys.stderr)
        return 2
    try:
        args.func(args)
    except (CliError, FileNotFoundError, ValueError) as error:
        # ValueError covers InputError/DecodeError/MnistNotFoundError's siblings; all are
        # user-facing conditions with a message written for the user.
        print(f"rdpipe: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
