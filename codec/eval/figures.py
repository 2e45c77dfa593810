"""PNG figures: the tutorial's digit grid, decoder samples, rate-distortion plots, and the
spectra and low-rank approximations of `rdpipe svd`."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# The tutorial's final validation numbers (information content of quantized latents under the
# prior, 15 epochs): TensorFlow Compression "Learned data compression" tutorial.
TUTORIAL_POINTS = [
    {"lambda": 2000, "bits": 40.36, "mae": 0.0360},
    {"lambda": 500, "bits": 14.36, "mae": 0.0615},
    {"lambda": 300, "bits": 8.70, "mae": 0.0772},
]


def digit_grid(originals: np.ndarray, strings: Sequence[bytes], information_bits: np.ndarray,
               reconstructions: np.ndarray, path: str | Path, title: str = "") -> Path:
    """The tutorial's 4×4 figure: original | hex string + bits | reconstruction, per cell."""
    n = min(16, len(originals))
    fig, axes = plt.subplots(4, 4, figsize=(14, 4.8))
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i >= n:
            continue
        gap = np.zeros((28, 42), np.uint8)  # room for the string label
        ax.imshow(np.concatenate([originals[i, ..., 0], gap, reconstructions[i, ..., 0]], 1),
                  cmap="gray", vmin=0, vmax=255)
        hex_string = strings[i].hex()
        if len(hex_string) > 12:
            hex_string = hex_string[:10] + "…"
        ax.text(.5, .5, f"→ 0x{hex_string} →\n{8 * len(strings[i])} bits "
                        f"({information_bits[i]:.1f} info)",
                ha="center", va="top", color="white", fontsize="small", transform=ax.transAxes)
    if title:
        fig.suptitle(title)
    plt.subplots_adjust(wspace=0, hspace=0, left=0, right=1, bottom=0, top=.93 if title else 1)
    return _save(fig, path)


def image_grid(images: np.ndarray, path: str | Path, title: str = "", columns: int = 4) -> Path:
    """A plain grid of uint8 digits `[N, 28, 28, 1]` (e.g. samples from random bytes)."""
    rows = int(np.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.4 * rows + .4),
                             squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i, ..., 0], cmap="gray", vmin=0, vmax=255)
    if title:
        fig.suptitle(title, fontsize="small")
    return _save(fig, path)


def rd_plot(points: Sequence[dict], path: str | Path, title: str = "MNIST rate–distortion",
            reference: Sequence[dict] = TUTORIAL_POINTS) -> Path:
    """MAE vs bits/digit: ours as actual coded bits (and information content), plus reference.

    `points` need keys lambda, bits_per_digit, information_bits, mae; an optional
    `decoder_input` key splits them into one series per training variant.
    """
    fig, ax = plt.subplots(figsize=(6.8, 4.8))
    variants = sorted({p.get("decoder_input", "") for p in points})
    for color, variant in zip(("C0", "C1", "C2", "C3"), variants):
        series = sorted((p for p in points if p.get("decoder_input", "") == variant),
                        key=lambda p: p["bits_per_digit"])
        suffix = f" ({variant} decoder input)" if variant else ""
        ax.plot([p["bits_per_digit"] for p in series], [p["mae"] for p in series], "o-",
                color=color, label=f"rdpipe{suffix}: actual coded bits")
        ax.plot([p["information_bits"] for p in series], [p["mae"] for p in series], "x--",
                color=color, alpha=.5, label=f"rdpipe{suffix}: information content")
        for p in series:
            ax.annotate(f"λ={p['lambda']:g}", (p["bits_per_digit"], p["mae"]),
                        textcoords="offset points", xytext=(6, 4), fontsize="x-small")
    if reference:
        ref = sorted(reference, key=lambda p: p["bits"])
        ax.plot([p["bits"] for p in ref], [p["mae"] for p in ref], "s:", color="gray",
                label="TFC tutorial (validation information content)")
    ax.set_xlabel("rate [bits / digit]")
    ax.set_ylabel("distortion [MAE, pixels in [0, 1]]")
    ax.set_title(title, fontsize="medium")
    ax.grid(alpha=.3)
    ax.legend(fontsize="x-small")
    return _save(fig, path)


def image_rd_plot(measured: dict[str, Sequence[dict]], path: str | Path,
                  reference: dict[str, Sequence[dict]] | None = None,
                  title: str = "") -> Path:
    """PSNR and MS-SSIM (dB: −10·log10(1 − MS-SSIM)) vs bpp side by side: measured curves as
    solid lines with markers, published reference curves dashed. Points need bpp, psnr and
    (for the right panel) ms_ssim."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    series = [(name, points, "o-") for name, points in measured.items()]
    series += [(name, points, "--") for name, points in (reference or {}).items()]
    for name, points, style in series:
        points = sorted(points, key=lambda p: p["bpp"])
        bpp = [p["bpp"] for p in points]
        axes[0].plot(bpp, [p["psnr"] for p in points], style, label=name, markersize=4)
        if all("ms_ssim" in p for p in points):
            axes[1].plot(bpp, [-10 * np.log10(max(1 - p["ms_ssim"], 1e-10)) for p in points],
                         style, label=name, markersize=4)
    upper = max((p["bpp"] for _, points, _ in series for p in points), default=1.0)
    for ax, ylabel in zip(axes, ("PSNR (dB, RGB)", "MS-SSIM (dB)")):
        ax.set(xlabel="bits per pixel (actual bytes)", ylabel=ylabel, xlim=(0, min(upper, 2.5)))
        ax.grid(alpha=.3)
        ax.legend(fontsize="x-small")
    if title:
        fig.suptitle(title, fontsize="medium")
    return _save(fig, path)


CHANNEL_COLOURS = {1: [("grey", "k")], 3: [("R", "r"), ("G", "g"), ("B", "b")]}


def svd_spectrum_figure(singular_values: np.ndarray, height: int, width: int,
                        path: str | Path) -> Path:
    """Singular values (top 100), cumulative energy and stored size vs rank; one curve per
    channel (one for greyscale images and matrices)."""
    channels, limit = singular_values.shape
    ranks = np.arange(1, limit + 1)
    energy = np.cumsum(singular_values, axis=1) / np.maximum(
        singular_values.sum(axis=1, keepdims=True), 1e-300)
    named = CHANNEL_COLOURS.get(channels, [(f"channel {c}", f"C{c}") for c in range(channels)])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    top = min(100, limit)
    for c, (name, colour) in enumerate(named):
        axes[0].plot(ranks[:top], singular_values[c, :top], ".-", color=colour, label=name)
        axes[1].plot(ranks, energy[c], color=colour, label=name)
    if channels > 1:
        axes[1].plot(ranks, energy.mean(0), "k--", label="mean (the energy factor)")
    axes[0].set(xlabel="index $i$", ylabel=r"$\sigma_i$", yscale="log",
                title=f"singular values (top {top})")
    axes[1].set(xlabel="rank $r$", ylabel=r"$\Sigma_{i \leq r}\, \sigma_i \;/\; \Sigma_i\, \sigma_i$",
                title="cumulative energy")
    axes[2].plot(ranks, ranks * (height + width + 1) / (height * width), color="k")
    axes[2].axhline(1, color="gray", ls="--")
    axes[2].set(xlabel="rank $r$", ylabel=r"$r\,(m + n + 1) \,/\, (m\,n)$",
                title="stored numbers / pixels (the compression factor)")
    for ax in axes[:2]:
        ax.legend()
        ax.grid(alpha=.3)
    return _save(fig, path)


def svd_approximation_panels(original: np.ndarray, kind: str, approximations: list,
                             path: str | Path) -> Path:
    """Per approximation (choice, rank, array): original, approximation and |error| on a colour
    map scaled to the error's own range (99.5th percentile), with its colour bar."""
    rows = len(approximations)
    fig, axes = plt.subplots(rows, 3, figsize=(13, 3.6 * rows), squeeze=False)
    grey = original.shape[-1] == 1

    limits = float(original.min()), float(original.max())   # one scale for A and A_r

    def show(ax, picture, title):
        if kind == "matrix":
            image = ax.imshow(picture[..., 0], cmap="viridis", vmin=limits[0], vmax=limits[1])
            fig.colorbar(image, ax=ax, fraction=.046)
        else:
            ax.imshow(picture[..., 0] if grey else picture, cmap="gray" if grey else None,
                      vmin=0, vmax=255)
        ax.set_title(title)
        ax.axis("off")

    for row, (choice, rank, approximation) in zip(axes, approximations):
        error = np.abs(original.astype(np.float64) - approximation.astype(np.float64))
        error = error.mean(axis=-1)            # mean over colour channels
        show(row[0], original, "original")
        how = {"rank": "", "compression": f" (compression factor {choice.value:g})",
               "energy": f" (energy factor {choice.value:g})"}[choice.mode]
        show(row[1], approximation, f"rank {rank}{how}")
        scale = float(np.percentile(error, 99.5)) or float(error.max()) or 1.
        image = row[2].imshow(error, cmap="magma", vmin=0, vmax=scale)
        row[2].set_title("|error| in " + ("grey levels" if kind == "image" else "matrix units"))
        row[2].axis("off")
        fig.colorbar(image, ax=row[2], fraction=.046)
    return _save(fig, path)


def prior_figure(path: str | Path, scales=(.25, .5, 1., 2., 4.)) -> Path:
    """The MNIST codec's prior (codec/entropy/priors.NoisyLogistic: a logistic convolved with
    U(−½, ½)) at several scales: its density beside the plain logistic's, and the bin masses at
    the integers, which are the coding tables' probabilities (log scale: the bits of a symbol
    are −log₂ of them)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from codec.entropy.priors import NoisyLogistic  # pylint: disable=import-outside-toplevel
    fig, (density, masses) = plt.subplots(1, 2, figsize=(13, 4.5))
    y = np.linspace(-8, 8, 801)
    for index, scale in enumerate(scales):
        colour = f"C{index}"
        prior = NoisyLogistic(0., tf.constant(float(scale), tf.float64))
        noisy = prior.prob(tf.constant(y)).numpy()
        z = y / scale
        logistic = np.exp(-z) / (scale * (1 + np.exp(-z)) ** 2)
        density.plot(y, noisy, color=colour, label=f"noisy logistic, s = {scale:g}")
        density.plot(y, logistic, ":", color=colour)
        bins = np.arange(-8, 9)
        mass = prior.prob(tf.constant(bins, tf.float64)).numpy()
        masses.semilogy(bins, mass, "o-", color=colour, label=f"s = {scale:g}: "
                        f"P(0) = {mass[8]:.3f} ({-np.log2(mass[8]):.2f} bits)")
    density.set(xlabel="latent value y", ylabel="density",
                title="prior density: noisy (solid) vs plain logistic (dotted)")
    masses.set(xlabel="quantized latent ŷ", ylabel="probability of the bin",
               title="bin probabilities (what the entropy coder uses)")
    for ax in (density, masses):
        ax.legend(fontsize=8)
        ax.grid(alpha=.3)
    return _save(fig, path)


def spectrum_fit_figure(fits: list, target: np.ndarray, path: str | Path) -> Path:
    """`fit_spectrum` from several random starts: loss per step (log), and the eigenvalue
    trajectories of the first start against the target (dashed)."""
    fig, (losses, paths) = plt.subplots(1, 2, figsize=(13, 4.5))
    for index, (seed, fit) in enumerate(fits):
        losses.semilogy(np.arange(1, fit.steps + 1), fit.loss_history, color=f"C{index}",
                        label=f"start {seed}: {fit.steps} steps")
    losses.set(xlabel="Adam step", ylabel="mean squared eigenvalue error",
               title="convergence from several random starts")
    seed, first = fits[0]
    for k in range(first.eigenvalue_history.shape[1]):
        paths.plot(np.arange(1, first.steps + 1), first.eigenvalue_history[:, k], color=f"C{k}")
        paths.axhline(np.sort(target)[k], color=f"C{k}", ls="--", lw=.8)
    paths.set(xlabel="Adam step", ylabel="eigenvalue",
              title=f"eigenvalues of (P + Pᵀ)/2 (start {seed}); target dashed")
    for ax in (losses, paths):
        ax.grid(alpha=.3)
    losses.legend(fontsize=8)
    return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
