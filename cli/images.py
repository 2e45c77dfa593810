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


def _pyplot():
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    return plt


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


# ---------------------------------------------------------------------------- svd-report
def cmd_svd_report(args) -> None:
    """Plots + JSON for one image: spectrum, cumulative energy, compression factor vs rank,
    and original / approximation / error images for the chosen ranks."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel
    from codec.linalg import svd  # pylint: disable=import-outside-toplevel
    try:
        image = np.asarray(Image.open(args.image).convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise CliError(f"{args.image}: not a readable image ({error})") from None
    height, width, _ = image.shape
    max_rank = min(height, width)
    ranks = sorted(set(args.ranks))
    if any(r < 1 or r > max_rank for r in ranks):
        raise CliError(f"--ranks must be in [1, {max_rank}] for a {height}×{width} image")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    x = tf.transpose(tf.constant(image[None], tf.float32), [0, 3, 1, 2])
    spectrum = tf.linalg.svd(x, compute_uv=False).numpy()[0]          # [C, k]
    energy = np.cumsum(spectrum, axis=1) / spectrum.sum(axis=1, keepdims=True)
    ks = np.arange(1, max_rank + 1)
    compression = ks * (height + width + 1) / (height * width)
    approximations = {r: svd.approximate_rank(image[None], r) for r in ranks}

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for c, name in enumerate("RGB"):
        axes[0].bar(ks[:min(100, max_rank)] + .25 * (c - 1), spectrum[c, :100], .25,
                    label=name, color="rgb"[c])
        axes[1].plot(ks, energy[c], color="rgb"[c], label=name)
    axes[1].plot(ks, energy.mean(0), "k--", label="mean (energy factor)")
    axes[0].set(xlabel="index i", ylabel="σᵢ", yscale="log", title="singular values (top 100)")
    axes[1].set(xlabel="rank r", ylabel="Σ_{i≤r} σᵢ / Σ σᵢ", title="cumulative energy")
    axes[2].plot(ks, compression)
    axes[2].axhline(1, color="gray", ls="--")
    axes[2].set(xlabel="rank r", ylabel="r·(m+n+1) / (m·n)", title="stored size / pixels")
    for ax in axes[:2]:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "spectrum.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(len(ranks), 3, figsize=(12, 3.4 * len(ranks)), squeeze=False)
    rows = []
    for row, r in zip(axes, ranks):
        recon = approximations[r].reconstruction.numpy()[0]
        error = np.abs(image.astype(np.int16) - recon).astype(np.uint8)
        for ax, picture, title in zip(row, (image, recon, error),
                                      ("original", f"rank {r}", f"|error| (rank {r})")):
            ax.imshow(picture)
            ax.set_title(title)
            ax.axis("off")
        mse = float(np.mean((image.astype(np.float64) - recon) ** 2))
        rows.append({"rank": r, "compression_factor": float(compression[r - 1]),
                     "energy_factor": float(energy.mean(0)[r - 1]),
                     "stored_numbers": int(approximations[r].stored_size.numpy()[0]),
                     "frobenius_error_squared_per_channel": [
                         float((spectrum[c, r:] ** 2).sum()) for c in range(3)],
                     "psnr_db": 10 * np.log10(255 ** 2 / mse) if mse else None})
    fig.tight_layout()
    fig.savefig(out / "approximations.png", dpi=90)
    plt.close(fig)
    (out / "svd_report.json").write_text(json.dumps({
        "image": str(args.image), "height": height, "width": width,
        "singular_values": spectrum.tolist(), "ranks": rows}, indent=2) + "\n")
    print(f"wrote {out / 'spectrum.png'}, {out / 'approximations.png'}, "
          f"{out / 'svd_report.json'}")


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

    p = sub.add_parser("svd-report", help="singular-value plots + low-rank approximations")
    p.add_argument("image")
    p.add_argument("--ranks", type=int, nargs="+", default=[5, 20, 50])
    p.add_argument("--output-dir", default="svd-report")
    p.set_defaults(func=cmd_svd_report)
