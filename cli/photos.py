"""`rdpipe compress` / `decompress` (any codec model, local or through a server) and `rdpipe zoo`.

Inputs are files, directories (searched recursively) or glob patterns; photos go through
`codec.data.image_io.load_photo`'s conversion rules, `.npy` arrays of uint8 digits through the MNIST
models. Every `.bin` is a container file (codec/entropy/container.py, schemas/container.md).
"""
from __future__ import annotations

import glob
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from cli.common import CliError, read_npy_images
from codec.entropy import container

MS_SSIM_MIN_SIDE = 176   # tf.image.ssim_multiscale's five scales of an 11-pixel window
MS_SSIM_MAX_PIXELS = 4096 * 4096   # --metrics on bigger photos: PSNR only (memory)


@dataclass
class Row:
    """One coded or decoded file, for the table."""
    name: str
    height: int
    width: int
    file_bytes: int
    information_bits: float | None = None
    payload_bytes: int | None = None      # the coded strings inside the container
    psnr: float | None = None
    ms_ssim: float | None = None
    model: str | None = None              # the model chosen for this file (--target-bpp)

    @property
    def bpp(self) -> float:
        return 8 * self.file_bytes / (self.height * self.width)


# ------------------------------------------------------------------------------- inputs
def expand_inputs(specs: Iterable[str], suffixes: tuple[str, ...]) -> list[tuple[Path, str]]:
    """Files, directories (recursive, files with `suffixes`) and globs → (path, output name)
    pairs; the output name keeps the path below a given directory, so equal file names in two
    folders do not overwrite each other."""
    items: list[tuple[Path, str]] = []
    for spec in specs:
        path = Path(spec)
        if path.is_file():
            items.append((path, path.stem))
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                raise CliError(f"{path}: no {'/'.join(suffixes)} files in this directory")
            items += [(p, p.relative_to(path).with_suffix("").as_posix()) for p in found]
        else:
            matches = sorted(Path(p) for p in glob.glob(spec, recursive=True)
                             if Path(p).is_file())
            if not matches:
                raise CliError(f"{spec}: no such file")
            items += [(p, p.stem) for p in matches]
    names: dict[str, Path] = {}
    for path, name in items:
        if name in names and names[name] != path:
            raise CliError(f"{names[name]} and {path} would both be written as {name}: "
                           "give their directories instead, or compress them separately")
        names[name] = path
    return list(dict.fromkeys(items))


def _progress(items: list, quiet: bool):
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    # disable=None: no bar when stderr is not a terminal (logs, CI)
    return tqdm(items, file=sys.stderr, unit="file",
                disable=True if quiet or len(items) < 2 else None, leave=False)


def _say(line: str, bar) -> None:
    bar.write(line, file=sys.stdout)   # above the progress bar, not through it


def _warn(path: Path, message: str, bar) -> None:
    bar.write(f"warning: {path}: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------- compress
def compress_files(backend, specs: list[str], out_dir: Path, *, tile: int, metrics: bool,
                   quiet: bool = False, target_bpp: float | None = None) -> list[Row]:
    """Compresses every input with `backend` (codec.photo_codec.CodecBackend) into
    `out_dir/<name>.bin`; prints one row per file. With `target_bpp`, `backend` is a
    `codec.photo_codec.ModelLadder` and each photo gets the highest quality whose file is
    ≤ `target_bpp` bits per pixel (the row names the model). Returns the rows; raises
    CliError after the others are done if some inputs could not be coded."""
    from codec import photo_codec  # pylint: disable=import-outside-toplevel
    from codec.data import image_io  # pylint: disable=import-outside-toplevel
    items = expand_inputs(specs, image_io.IMAGE_SUFFIXES + (".npy",))
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, failures = [], []
    _print_header(metrics, chosen=target_bpp is not None)
    bar = _progress(items, quiet)
    for path, name in bar:
        model = None
        try:
            if path.suffix.lower() == ".npy" and target_bpp is not None:
                raise CliError("--target-bpp chooses among photo models; code .npy digits "
                               "with --model")
            if path.suffix.lower() == ".npy":
                digits = read_npy_images(path)
                coded = photo_codec.encode_fixed_size(backend, digits) if \
                    backend.fixed_size else [photo_codec.encode_image(backend, d, tile)
                                             for d in digits]
                pairs = [(f"{name}_{i:05d}", image, data, bits)
                         for i, (image, (data, bits)) in enumerate(zip(digits, coded))]
            else:
                image, warnings = image_io.load_photo(path, backend.channels)
                for warning in warnings:
                    _warn(path, warning, bar)
                if target_bpp is None:
                    data, bits = photo_codec.encode_image(backend, image, tile)
                else:
                    choice = photo_codec.encode_at_target(backend, image, target_bpp, tile)
                    data, bits, model = choice.data, choice.bits, choice.model
                    if not choice.met:
                        _warn(path, f"even the lowest quality ({model}) needs "
                                    f"{8 * len(data) / image[..., 0].size:.3f} bpp, above "
                                    f"--target-bpp {target_bpp:g}; written with it", bar)
                pairs = [(name, image, data, bits)]
        except (ValueError, OSError, CliError) as error:   # this input only; go on
            failures.append(str(error) if str(path) in str(error) else f"{path}: {error}")
            bar.write(f"error: {failures[-1]}", file=sys.stderr)
            continue
        for item_name, image, data, bits in pairs:
            target = out_dir / f"{item_name}.bin"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            row = Row(item_name + ".bin", image.shape[0], image.shape[1], len(data), bits,
                      payload_bytes=sum(map(len, container.unpack(data).segments)),
                      model=model)
            if metrics:
                decoder = backend if model is None else backend[choice.index]
                _measure(row, image, photo_codec.decode_file(decoder, data)[0])
            rows.append(row)
            _say(_format_row(row, metrics), bar)
    _print_summary(rows, out_dir)
    if failures:
        raise CliError(f"{len(failures)} of {len(items)} inputs not compressed: "
                       + "; ".join(failures[:5]))
    return rows


def _measure(row: Row, original: np.ndarray, decoded: np.ndarray) -> None:
    from codec.eval import image_eval  # pylint: disable=import-outside-toplevel
    row.psnr = image_eval.psnr(original, decoded)
    height, width = original.shape[:2]
    if min(height, width) >= MS_SSIM_MIN_SIDE and height * width <= MS_SSIM_MAX_PIXELS:
        channels = original.shape[-1]
        row.ms_ssim = image_eval.ms_ssim(original if channels == 3 else original[..., 0],
                                         decoded if channels == 3 else decoded[..., 0])


def _print_header(metrics: bool, chosen: bool = False) -> None:
    print(f"{'file':<32} {'size':>11} {'bytes':>9} {'bpp':>7}"
          + (f" {'PSNR dB':>8} {'MS-SSIM':>8}" if metrics else "")
          + ("  model" if chosen else ""))


def _format_row(row: Row, metrics: bool) -> str:
    line = (f"{row.name:<32} {f'{row.width}×{row.height}':>11} {row.file_bytes:>9,} "
            f"{row.bpp:>7.3f}")
    if metrics:
        line += f" {row.psnr:>8.2f}" if row.psnr is not None else f" {'–':>8}"
        line += f" {row.ms_ssim:>8.4f}" if row.ms_ssim is not None else f" {'–':>8}"
    return line + (f"  {row.model}" if row.model else "")


def _print_summary(rows: list[Row], out_dir: Path) -> None:
    if not rows:
        return
    total = sum(r.file_bytes for r in rows)
    pixels = sum(r.height * r.width for r in rows)
    count = f"{len(rows)} image" + ("s" if len(rows) > 1 else "")
    line = f"{count}: {total:,} bytes, {8 * total / pixels:.3f} bpp"
    info = [r.information_bits for r in rows if r.information_bits is not None]
    payload = [r.payload_bytes for r in rows if r.payload_bytes is not None]
    if len(info) == len(rows) and pixels / len(rows) <= 4096:   # digits: bits per image
        # A digit's string is a few bytes; the container header (model name, λ, tables
        # fingerprint, size: schemas/container.md) is most of a small file, so say so.
        line += (f" in files, of which {total - sum(payload):,} bytes container headers; "
                 f"payload {8 * sum(payload) / len(rows):.1f} bits/image, information content "
                 f"{np.mean(info):.1f} bits/image")
    elif len(info) == len(rows):
        line += f" (information content {sum(info) / pixels:.3f} bpp)"
    psnrs = [r.psnr for r in rows if r.psnr is not None]
    if psnrs:
        line += f", PSNR {np.mean(psnrs):.2f} dB"
    print(f"{line} → {out_dir}")


# -------------------------------------------------------------------------- decompress
def decompress_files(backend_for: Callable, specs: list[str], out_dir: Path, *,
                     image_format: str = "png", raw: bool = False, check: bool = True,
                     quiet: bool = False, max_pixels: int | None = None) -> list[Row]:
    """Decodes `.bin` files to images in `out_dir`. `backend_for(header or None)` gives the
    model (None: a raw signature string, `raw=True`). Files that fail are reported and skipped;
    a CliError at the end names them. `max_pixels`: files whose header claims a larger image
    are refused before any decoding (None: the container's own limit, 64 MP)."""
    from codec import photo_codec  # pylint: disable=import-outside-toplevel
    from codec.data import image_io  # pylint: disable=import-outside-toplevel
    from codec.entropy import container  # pylint: disable=import-outside-toplevel
    items = expand_inputs(specs, (".bin",))
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, failures = [], []
    print(f"{'file':<32} {'size':>11} {'bytes':>9} {'bpp':>7}")
    bar = _progress(items, quiet)
    for path, name in bar:
        data = path.read_bytes()
        try:
            if raw:
                image = _decode_raw(backend_for(None), data, check)
            else:
                header = container.unpack(data)
                if max_pixels is not None and header.height * header.width > max_pixels:
                    raise CliError(f"the header claims a {header.width}×{header.height} image "
                                   f"({header.height * header.width:,} pixels), over "
                                   f"--max-pixels {max_pixels:,}; not decoded")
                backend = backend_for(header)
                image, _ = photo_codec.decode_file(_unchecked(backend) if not check else
                                                   backend, data)
        except (ValueError, OSError, CliError) as error:   # this file only; go on
            failures.append(f"{path}: {error}")
            bar.write(f"error: {failures[-1]}", file=sys.stderr)
            continue
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        written = image_io.save_image(image, target, image_format)
        row = Row(written.name, image.shape[0], image.shape[1], len(data))
        rows.append(row)
        _say(_format_row(row, False), bar)
    if rows:
        print(f"decoded {len(rows)} files → {out_dir}")
    if failures:
        raise CliError(f"{len(failures)} of {len(items)} files not decoded: "
                       + "; ".join(failures[:5]))
    return rows


def _decode_raw(backend, data: bytes, check: bool) -> np.ndarray:
    """A raw signature string (no container): the serving API's bytes, or files written
    before containers existed; check=False also decodes strings failing the sanity check."""
    if not check:
        return backend.decompress_with_status([data])[0][0]
    if not data:
        raise ValueError("empty file: failed the decoder's sanity check")
    return backend.decompress([data])[0]


class _unchecked:  # pylint: disable=invalid-name
    """A SavedCodec whose decompress skips the sanity check (`--no-check`)."""

    def __init__(self, codec):
        self._codec = codec

    def __getattr__(self, name):
        return getattr(self._codec, name)

    def decompress(self, strings):
        return self._codec.decompress(strings, check=False)


# ------------------------------------------------------------------------------ local
def local_backends(model_spec: str | None) -> Callable:
    """`backend_for(header)` for local decoding: `--model` if given, else the zoo model the
    file names; models are loaded once."""
    from codec.saved_codec import SavedCodec  # pylint: disable=import-outside-toplevel
    from codec.zoo import resolve_model  # pylint: disable=import-outside-toplevel
    loaded: dict[str, SavedCodec] = {}

    def backend_for(header):
        spec = model_spec
        if spec is None:
            if header is None:
                raise CliError("--raw files name no model: give --model")
            spec = header.model
        if spec not in loaded:
            try:
                loaded[spec] = SavedCodec(resolve_model(spec))
            except ValueError as error:
                if model_spec is None:
                    raise CliError(f"written by model {header.model_label}, which is not in "
                                   f"the zoo: give --model DIR") from None
                raise CliError(str(error)) from None
        return loaded[spec]
    return backend_for


def family_names(family: str) -> list[str]:
    """The zoo's models of `family`, lowest quality (λ) first."""
    from codec import zoo  # pylint: disable=import-outside-toplevel
    names = [card["name"] for card in zoo.cards() if card.get("family") == family]
    if not names:
        families = sorted({card.get("family") for card in zoo.cards()})
        raise CliError(f"--family {family}: no such family in the zoo (has: "
                       f"{', '.join(map(str, families)) or 'none'})")
    return names


def zoo_family() -> str:
    """The zoo's family (the default of `--family`)."""
    from codec import zoo  # pylint: disable=import-outside-toplevel
    try:
        return zoo.default_family()
    except zoo.ZooError as error:
        raise CliError(str(error)) from None


def quality_model(family: str, quality: int) -> str:
    """`--quality K` → the zoo name `<family>-qK`, checked against the family's ladder."""
    names = family_names(family)
    name = f"{family}-q{quality}"
    if name not in names:
        raise CliError(f"--quality {quality}: {family} has qualities 1–{len(names)} "
                       f"({', '.join(names)})")
    return name


def check_target_bpp(value: float | None) -> None:
    if value is not None and not value > 0:
        raise CliError(f"--target-bpp must be > 0 bits per pixel, got {value:g}")


def cmd_compress(args) -> None:
    from codec.photo_codec import ModelLadder  # pylint: disable=import-outside-toplevel
    from codec.saved_codec import SavedCodec  # pylint: disable=import-outside-toplevel
    from codec.zoo import resolve_model  # pylint: disable=import-outside-toplevel
    check_target_bpp(args.target_bpp)
    args.family = args.family or zoo_family()
    if args.target_bpp is not None:
        backend = ModelLadder(family_names(args.family),
                              lambda name: SavedCodec(resolve_model(name)))
        print(f"--target-bpp {args.target_bpp:g}: choosing per file among "
              f"{', '.join(backend.names)}")
    else:
        spec = quality_model(args.family, args.quality) if args.quality else args.model
        backend = SavedCodec(resolve_model(spec))
    compress_files(backend, args.inputs, Path(args.output_dir), tile=args.tile,
                   metrics=args.metrics, quiet=args.quiet, target_bpp=args.target_bpp)


def cmd_decompress(args) -> None:
    if args.raw and not args.model:
        raise CliError("--raw files name no model: give --model")
    decompress_files(local_backends(args.model), args.inputs, Path(args.output_dir),
                     image_format=args.format, raw=args.raw, check=not args.no_check,
                     quiet=args.quiet, max_pixels=args.max_pixels)


# -------------------------------------------------------------------------------- zoo
def cmd_zoo(args) -> None:
    from codec import zoo  # pylint: disable=import-outside-toplevel
    if args.zoo_command == "list":
        cards = zoo.cards()
        if args.json:
            print(json.dumps(cards, indent=2))
            return
        if not cards:
            raise CliError(f"the zoo ({zoo.ZOO_DIR}) is empty: make bench-kodak && make zoo")
        print(f"{'model':<12} {'λ':>7} {'Kodak bpp':>9} {'PSNR dB':>8} {'MS-SSIM':>8} "
              f"{'enc s':>6} {'dec s':>6} {'MB':>5}")
        for card in cards:
            kodak = card["kodak"]
            print(f"{card['name']:<12} {card['lambda']:>7g} {kodak['bpp']:>9.3f} "
                  f"{kodak['psnr_db']:>8.2f} {kodak['ms_ssim']:>8.4f} "
                  f"{kodak['encode_seconds']:>6.2f} {kodak['decode_seconds']:>6.2f} "
                  f"{card['saved_model_bytes'] / 1e6:>5.1f}")
        print(f"cards: {zoo.ZOO_DIR}/<model>/card.md · use: rdpipe compress PHOTO --model "
              f"{cards[0]['name']} (or --model {cards[0]['lambda']:g})")
    elif args.zoo_command == "build":
        zoo.build_zoo(Path(args.models_dir), Path(args.report), force=args.force)
    else:   # serving-layout
        names = zoo.serving_layout(Path(args.target), copy=args.copy)
        print(f"{len(names)} models in TF Serving's layout under {args.target}: "
              + ", ".join(names))


def add_photo_parsers(sub) -> None:
    """compress, decompress and zoo."""
    p = sub.add_parser("compress", help="photos (PNG/JPEG/WebP/TIFF/BMP/GIF) or .npy digits → "
                                        ".bin files")
    p.add_argument("inputs", nargs="+", help="files, directories or glob patterns")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model",
                       help="zoo name (bls2017-q1 …, see `rdpipe zoo list`), zoo λ (0.01) or a "
                            "model dir")
    add_quality_options(which)
    p.add_argument("--family", default=None,
                   help="model family of --quality / --target-bpp (default: the zoo's)")
    add_compress_options(p)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("decompress", help=".bin files → PNG (or --format jpg|webp previews)")
    p.add_argument("inputs", nargs="+", help=".bin files, directories or glob patterns")
    p.add_argument("--model", help="default: the zoo model named in each file")
    p.add_argument("--raw", action="store_true",
                   help="inputs are raw signature strings without the rdpipe header")
    p.add_argument("--no-check", action="store_true",
                   help="decode even strings that fail the end-of-stream sanity check")
    add_decompress_options(p)
    p.set_defaults(func=cmd_decompress)

    p = sub.add_parser("zoo", help="the shipped Ballé 2017 models: list, build, serving layout")
    zoo_sub = p.add_subparsers(dest="zoo_command", required=True)
    q = zoo_sub.add_parser("list", help="model cards: λ, Kodak bpp / PSNR / MS-SSIM, speed")
    q.add_argument("--json", action="store_true", help="the full cards as JSON")
    q.set_defaults(func=cmd_zoo)
    q = zoo_sub.add_parser("build", help="replace the zoo with `make bench-kodak`'s models "
                                         "(make zoo)")
    q.add_argument("--models-dir", required=True,
                   help="the ladder's directory (make zoo: $RDPIPE_CACHE/ladders/bls2017)")
    q.add_argument("--report", default="benchmarks/results/kodak.json")
    q.add_argument("--force", action="store_true",
                   help="replace the zoo even where a new point is worse than the current one")
    q.set_defaults(func=cmd_zoo)
    q = zoo_sub.add_parser("serving-layout", help="write <target>/<model>/1/ for TF Serving")
    q.add_argument("target")
    q.add_argument("--copy", action="store_true", help="copy instead of symbolic links")
    q.set_defaults(func=cmd_zoo)


def add_quality_options(group) -> None:
    """--quality / --target-bpp, in the group that also holds --model."""
    group.add_argument("--quality", type=int, metavar="K",
                       help="the family's K-th model (1 = fewest bits): <family>-qK")
    group.add_argument("--target-bpp", type=float, metavar="X",
                       help="per photo, the highest quality whose file is ≤ X bits per pixel "
                            "(bisection over the family's ladder, as tfci.py --target_bpp); "
                            "prints the model chosen for each file")


def add_compress_options(p) -> None:
    from codec.photo_codec import DEFAULT_TILE  # pylint: disable=import-outside-toplevel
    p.add_argument("--output-dir", default="compressed")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE,
                   help="photos with a side above this many pixels are coded as tiles of this "
                        "size (memory bound)")
    p.add_argument("--metrics", action="store_true",
                   help="also decode and print PSNR / MS-SSIM of the round trip")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_decompress_options(p) -> None:
    p.add_argument("--output-dir", default="decompressed")
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help="refuse files whose header claims more pixels (default: the container "
                        "limit, 64 MP)")
    p.add_argument("--format", default="png", choices=["png", "jpg", "webp"],
                   help="png (lossless), or jpg / webp previews (quality 95)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
