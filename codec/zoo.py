"""The model zoo: trained Ballé 2017 models that ship in the repository (`zoo/`).

Layout: `zoo/<name>/saved_model/` (the SavedModel: compress / decompress / SVD signatures,
portable coder, so stock TF Serving loads it), `zoo/<name>/card.json` and `card.md` (λ,
training data and steps, Kodak bpp / PSNR / MS-SSIM, BD-rates, encode/decode times, the command
that produced it). Names follow CompressAI's quality index: `bls2017-q1` is the lowest λ (fewest
bits), `q4` the highest. Models are named on the command line by name, by λ (`--model 0.01`)
or by path.

The zoo changes only through `make zoo` (`build_zoo`), a deliberate step after `make
bench-kodak`: benchmarks never touch it, and a re-export is worth committing only when the models
improve (every re-export adds its size to the git history).
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

__all__ = ["ZOO_DIR", "ZooError", "cards", "resolve_model", "build_zoo", "serving_layout",
           "MAX_ZOO_BYTES"]

ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo"
FAMILY = "bls2017"       # the family of a report that does not name one
MAX_ZOO_BYTES = 120 * 1000 * 1000     # what the repository may carry (issue 22; 60 MB before)
ZOO_INDEX = "zoo.json"                # {"default_family": …}: the best-measured family


class ZooError(ValueError):
    """An unknown zoo model, or a zoo that cannot be built."""


def cards(zoo_dir: Path = ZOO_DIR) -> list[dict]:
    """Model cards (card.json) of the zoo, lowest λ first."""
    found = [json.loads(p.read_text()) for p in sorted(Path(zoo_dir).glob("*/card.json"))]
    return sorted(found, key=lambda card: card["lambda"])


def families(zoo_dir: Path = ZOO_DIR) -> list[str]:
    return sorted({card.get("family", FAMILY) for card in cards(zoo_dir)})


def default_family(zoo_dir: Path = ZOO_DIR) -> str:
    """The family `--quality` / `--target-bpp` use when none is named: the best-measured one,
    recorded in `zoo/zoo.json` by `build_zoo`; the only family, or `bls2017`, without it."""
    index = Path(zoo_dir) / ZOO_INDEX
    if index.is_file():
        return json.loads(index.read_text())["default_family"]
    present = families(zoo_dir)
    return present[0] if len(present) == 1 else FAMILY


def resolve_model(spec: str, zoo_dir: Path = ZOO_DIR) -> Path:
    """`--model` value → model dir: an existing path, a zoo name (`bls2017-q3`), or a λ of a zoo
    model (`0.01`)."""
    path = Path(spec)
    if path.exists():
        return path
    available = cards(zoo_dir)
    for card in available:
        if card["name"] == spec:
            return Path(zoo_dir) / card["name"]
    try:
        lmbda = float(spec)
    except ValueError:
        lmbda = None
    if lmbda is not None:   # the default family's model of that λ first
        preferred = default_family(zoo_dir)
        for card in sorted(available, key=lambda c: c.get("family", FAMILY) != preferred):
            if math.isclose(card["lambda"], lmbda, rel_tol=1e-4):
                return Path(zoo_dir) / card["name"]
    names = ", ".join(f"{c['name']} (λ={c['lambda']:g})" for c in available) or "none"
    raise ZooError(f"--model {spec}: no such model directory, zoo name or zoo λ; zoo models: "
                   f"{names}")


def serving_layout(target: Path, zoo_dir: Path = ZOO_DIR, copy: bool = False) -> list[str]:
    """TF Serving's model base path for the zoo: `target/<name>/1/` → each SavedModel (symbolic
    links, or copies with `copy=True` for a server in another container). Returns the names."""
    names = []
    for card in cards(zoo_dir):
        source = (Path(zoo_dir) / card["name"] / "saved_model").resolve()
        version = Path(target) / card["name"] / "1"
        version.parent.mkdir(parents=True, exist_ok=True)
        if version.is_symlink() or version.exists():
            if version.is_symlink() or version.is_file():
                version.unlink()
            else:
                shutil.rmtree(version)
        if copy:
            shutil.copytree(source, version)
        else:
            version.symlink_to(source, target_is_directory=True)
        names.append(card["name"])
    return names


def _directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _card(name: str, point: dict, training: dict, report: dict, saved_model: Path,
          fingerprint: str, command: str) -> dict:
    return {
        "name": name, "family": report.get("family") or FAMILY, "lambda": training["lmbda"],
        "loss": "bpp + λ·MSE (pixels in [0, 255])",
        "training": {key: training.get(key) for key in (
            "steps", "patch_size", "batch_size", "filters", "learning_rate",
            "warm_start_from", "anchor_steps", "data")},
        "kodak": {"images": report.get("images"), "bpp": point["bpp"], "psnr_db": point["psnr"],
                  "ms_ssim": point["ms_ssim"], "encode_seconds": point["encode_seconds"],
                  "decode_seconds": point["decode_seconds"]},
        "family_bd_rate_psnr_percent": report.get("bd_rate_psnr"),
        "family_bd_rate_ms_ssim_percent": report.get("bd_rate_ms_ssim"),
        "units": report.get("units"),
        "coder": "portable (stock TensorFlow ops: loads in stock TF Serving)",
        "tables_fingerprint": fingerprint,
        "saved_model_bytes": _directory_bytes(saved_model),
        "produced_by": command,
    }


def card_markdown(card: dict) -> str:
    """The card as a short markdown page (card.md)."""
    kodak, training = card["kodak"], card["training"]
    bd = card.get("family_bd_rate_psnr_percent") or {}
    lines = [
        f"# {card['name']}: Ballé et al. 2017 image codec, λ = {card['lambda']:g}", "",
        f"Loss {card['loss']}; {card['coder']}; tables fingerprint "
        f"`{card['tables_fingerprint']}`; SavedModel {card['saved_model_bytes'] / 1e6:.1f} MB"
        + (" (transform weights stored as float16, decoded in float32)"
           if card.get("weights_dtype") == "float16" else "") + ".",
        "", "| Kodak (24 images) | value |", "|---|---|",
        f"| bits per pixel (actual file bytes) | {kodak['bpp']:.3f} |",
        f"| PSNR (RGB) | {kodak['psnr_db']:.2f} dB |",
        f"| MS-SSIM | {kodak['ms_ssim']:.4f} |",
        f"| encode / decode per image | {kodak['encode_seconds']:.2f} s / "
        f"{kodak['decode_seconds']:.2f} s |", "",
        f"Training: {training['steps']:,} steps of {training['batch_size']} × "
        f"{training['patch_size']}² crops, {training['filters']} filters, learning rate "
        f"{training['learning_rate']}"
        + (f", warm-started from {training['warm_start_from']} (trained for "
           f"{training.get('anchor_steps') or '?':,} steps)" if training.get("warm_start_from")
           else "")
        + f"; data: {training.get('data')}.", "",
        "BD-rate of the zoo's curve (all λ) in PSNR, percent (negative: fewer bits): "
        + ", ".join(f"{k} {v:+.1f}" for k, v in bd.items() if v is not None) + ".", "",
        f"Produced by: `{card['produced_by']}`.", ""]
    return "\n".join(lines)


def _model_lambda(model_dir: Path) -> float:
    return float(json.loads((model_dir / "summary.json").read_text())["config"]["lmbda"])


def worse_points(new_points: list[tuple[float, float]],
                 old_points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (bpp, PSNR) points of a new curve that are worse than the old curve: below its PSNR
    at the same bpp (linear in log bpp between the old points), or — beyond the old curve's
    highest rate — below the best old PSNR. Points below the old curve's lowest rate have
    nothing to lose against and count as better."""
    old = sorted(old_points)
    if not old:
        return []
    rates = np.log([bpp for bpp, _ in old])
    worse = []
    for bpp, psnr in new_points:
        if rates[0] <= np.log(bpp) <= rates[-1]:
            reference = float(np.interp(np.log(bpp), rates, [q for _, q in old]))
        else:   # outside: the old point with the most bits not above this one, if any
            cheaper = [q for b, q in old if b <= bpp]
            reference = max(cheaper) if cheaper else float("-inf")
        if psnr < reference:
            worse.append((bpp, psnr))
    return worse


def build_zoo(models_dir: Path, report_file: Path, zoo_dir: Path = ZOO_DIR,
              command: str = "make bench-kodak && make zoo",
              progress=print, force: bool = False) -> list[dict]:
    """Re-exports the models of `make bench-kodak` (the ladder's rungs under `models_dir`) into the zoo
    with cards from its report (kodak.json): they replace the zoo's models of the report's
    family (only if every new point beats that family's old curve, unless `force`); other
    families stay. The family becomes the zoo's default (`zoo.json`) when every point beats
    the current default family's curve too. Refuses a zoo above `MAX_ZOO_BYTES`."""
    from codec.models.bls2017_train import reexport_image_codec  # pylint: disable=import-outside-toplevel
    report = json.loads(Path(report_file).read_text())
    points = {p["parameter"]: p for p in report["rdpipe"]}
    # Half-precision weights (half the bytes) when bench-kodak measured them at ≤ 0.01 dB;
    # the cards then give the float16 exports' own numbers.
    half = report.get("float16_weights") or {}
    weights_dtype = "float16" if half.get("ok") else "float32"
    if weights_dtype == "float16":
        for row in half["models"]:
            points[row["model"]] = {**points[row["model"]], **{
                k: row[k] for k in ("bpp", "psnr", "ms_ssim")}}
    training = {t["model"]: t for t in report.get("training", [])}
    models = sorted((d for d in Path(models_dir).iterdir()
                     if d.name in points and (d / "summary.json").exists()),
                    key=lambda d: _model_lambda(d))
    if not models:
        raise ZooError(f"no evaluated models in {models_dir} named in {report_file}")
    family = report.get("family") or FAMILY
    current = cards(Path(zoo_dir))

    def curve(name):
        return [(c["kodak"]["bpp"], c["kodak"]["psnr_db"]) for c in current
                if c.get("family", FAMILY) == name]
    new_points = [(points[m.name]["bpp"], points[m.name]["psnr"]) for m in models]
    worse = worse_points(new_points, curve(family))
    if worse and not force:
        raise ZooError(f"the zoo's {family} models are replaced only when every new point beats "
                       "their curve; not better on Kodak: "
                       + ", ".join(f"{b:.3f} bpp / {q:.2f} dB" for b, q in worse)
                       + " (--force replaces them anyway)")
    default = default_family(Path(zoo_dir)) if current else family
    if default != family and not worse_points(new_points, curve(default)):
        default = family
    staging = Path(zoo_dir).with_name(Path(zoo_dir).name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for card in current:            # the other families' models stay as they are
        if card.get("family", FAMILY) != family:
            shutil.copytree(Path(zoo_dir) / card["name"], staging / card["name"])
    built = []
    for quality, model in enumerate(models, start=1):
        name = f"{family}-q{quality}"
        progress(f"exporting {model} → {name}")
        saved_model = staging / name / "saved_model"
        codec = reexport_image_codec(model, saved_model, weights_dtype=weights_dtype)
        info = {**training.get(model.name, {})}
        info["data"] = ", ".join(Path(d).name for d in info.get("train_dirs") or []) or \
            "photos-train + photos-train-extra"
        info.setdefault("lmbda", _model_lambda(model))
        source = Path(models_dir) / (info.get("warm_start_from") or "")
        if info.get("warm_start_from") and (source / "summary.json").exists():
            info["anchor_steps"] = json.loads((source / "summary.json").read_text()).get("steps")
        card = _card(name, points[model.name], info, report, saved_model,
                     codec.entropy_model.fingerprint, command)
        card["weights_dtype"] = weights_dtype
        (staging / name / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        (staging / name / "card.md").write_text(card_markdown(card))
        built.append(card)
    total = _directory_bytes(staging)
    if total > MAX_ZOO_BYTES:
        raise ZooError(f"zoo would take {total / 1e6:.1f} MB, above the {MAX_ZOO_BYTES / 1e6:.0f} "
                       f"MB the repository carries (left in {staging})")
    (staging / ZOO_INDEX).write_text(json.dumps({"default_family": default}, indent=1) + "\n")
    shutil.rmtree(zoo_dir, ignore_errors=True)
    staging.rename(zoo_dir)
    progress(f"zoo: {len(built)} {family} models ({', '.join(families(Path(zoo_dir)))} in "
             f"all, default {default}), {total / 1e6:.1f} MB → {zoo_dir}")
    return built
