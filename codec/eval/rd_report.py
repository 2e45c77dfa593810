"""Rate–distortion reports: BD-rate tables of a learned codec against baselines and published
curves, and their markdown form. Shared by `rdpipe eval` and `make bench-kodak`.

A curve is a list of operating points, dicts with `bpp` (bits per pixel of actual bytes),
`psnr` (dB, RGB, 0–255 peak) and optionally `ms_ssim` (linear, in [0, 1]).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from codec.eval.image_eval import bd_rate, pareto_front, quality_overlap

Curve = list[dict]


def ms_ssim_db(ms_ssim: float) -> float:
    """MS-SSIM in dB, −10·log10(1 − MS-SSIM), as TFC's published results plot it."""
    return float(-10 * np.log10(max(1 - ms_ssim, 1e-10)))


def load_published_curves(path: str | Path) -> dict[str, Curve]:
    """The curves of a reference file like benchmarks/reference/kodak_published.json
    (`curves.NAME.bpp / psnr / ms_ssim` as parallel lists)."""
    curves = json.loads(Path(path).read_text())["curves"]
    out = {}
    for name, curve in curves.items():
        ms_ssim = curve.get("ms_ssim") or [None] * len(curve["bpp"])
        out[name] = [{"bpp": b, "psnr": p, **({"ms_ssim": s} if s is not None else {})}
                     for b, p, s in zip(curve["bpp"], curve["psnr"], ms_ssim)]
    return out


def _front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return pareto_front(points, rate=lambda p: p[0], quality=lambda p: p[1])


def _bd_rate_or_none(reference: list[tuple[float, float]],
                     test: list[tuple[float, float]]) -> float | None:
    try:
        # Pareto fronts: BD-rate needs curves rising in both rate and quality, and a dominated
        # operating point is one nobody would choose.
        return bd_rate(_front(reference), _front(test))
    except ValueError:            # < 4 points, or the curves do not overlap in quality
        return None


def bd_rate_table(ours: Curve, curves: dict[str, Curve]) -> tuple[dict, dict, dict]:
    """BD-rate (percent, negative = `ours` needs fewer bits) of `ours` against every curve, in
    PSNR and in MS-SSIM dB, each computed on the Pareto fronts of both curves. None where it
    cannot be computed (fewer than 4 front points, no overlap in quality, or no MS-SSIM in the
    reference). Third result: the PSNR interval (dB) each BD-rate averages over — a BD-rate
    over a sliver of overlap says little."""
    ours_psnr = [(p["bpp"], p["psnr"]) for p in ours]
    ours_ssim = [(p["bpp"], ms_ssim_db(p["ms_ssim"])) for p in ours]
    psnr, ssim, overlap = {}, {}, {}
    for name, points in curves.items():
        reference = [(p["bpp"], p["psnr"]) for p in points]
        psnr[name] = _bd_rate_or_none(reference, ours_psnr)
        low, high = quality_overlap(reference, ours_psnr)
        overlap[name] = [round(low, 2), round(high, 2)] if low < high else None
        ssim[name] = (_bd_rate_or_none([(p["bpp"], ms_ssim_db(p["ms_ssim"])) for p in points],
                                       ours_ssim)
                      if all("ms_ssim" in p for p in points) else None)
    return psnr, ssim, overlap


def markdown_report(bd_psnr: dict, bd_ssim: dict, ours: Curve,
                    overlap: dict | None = None, name: str = "rdpipe") -> str:
    """Two markdown tables: BD-rate against each curve (with the PSNR interval it averages
    over), and the learned codec's points."""
    def percent(value):
        return "n/a" if value is None else f"{value:+.1f} %"

    def interval(name):
        span = (overlap or {}).get(name)
        return "none" if span is None else f"{span[0]:.2f}–{span[1]:.2f}"
    lines = [f"| {name} vs | BD-rate (PSNR) | over PSNR (dB) | BD-rate (MS-SSIM dB) |",
             "|---|---|---|---|"]
    lines += [f"| {name} | {percent(bd_psnr[name])} | {interval(name)} | "
              f"{percent(bd_ssim.get(name))} |" for name in bd_psnr]
    lines += ["", "| model | bpp | PSNR (dB) | MS-SSIM | encode (s/image) | decode (s/image) |",
              "|---|---|---|---|---|---|"]
    def seconds(point, key):      # classical codecs (Pillow) are not timed
        return f"{point[key]:.2f}" if key in point else "—"
    lines += [f"| {p['parameter']} | {p['bpp']:.3f} | {p['psnr']:.2f} | {p['ms_ssim']:.4f} | "
              f"{seconds(p, 'encode_seconds')} | {seconds(p, 'decode_seconds')} |"
              for p in sorted(ours, key=lambda p: p["bpp"])]
    return "\n".join(lines) + "\n"
