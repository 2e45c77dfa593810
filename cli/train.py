"""`rdpipe train FAMILY`: train one codec of any registered family for one λ.

Every field of the family's training config is an option: `--lambda 0.01`, `--epochs 20`,
`--latent-dims 50` (MNIST), `--patch-size 256 --train-dir A B` (bls2017), or `--set key=value`;
an unknown one is an error naming the valid ones. `rdpipe train-images` (older spelling) is `rdpipe train bls2017`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from cli.common import CliError

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"

# Older flag spellings → (config field, value for flags without one).
ALIASES = {"lambda": ("lmbda", None), "jit": ("jit_compile", True),
           "grey": ("channels", 1), "mixed_precision": ("precision_policy", "mixed_bfloat16")}


def _convert(field: dataclasses.Field, raw: list[str], flag: str):
    """Command-line strings → the field's type (by its annotation)."""
    annotation = str(field.type)
    if not raw:
        if "bool" in annotation:
            return True
        raise CliError(f"--{flag} needs a value")
    if len(raw) > 1:
        if annotation.startswith("str"):
            return ",".join(raw)          # several folders: train_dir is comma-separated
        raise CliError(f"--{flag} takes one value, got {raw}")
    value = raw[0]
    if "None" in annotation and value.lower() == "none":
        return None
    try:
        if annotation.startswith("bool"):
            return value.lower() in ("1", "true", "yes", "on")
        if annotation.startswith("int"):
            return int(value)
        if annotation.startswith("float"):
            return float(value)
    except ValueError:
        raise CliError(f"--{flag}: {value!r} is not a {annotation}") from None
    return value


def parse_options(config_class: type, tokens: list[str], settings: list[str]) -> dict:
    """`--some-field V [V…]` tokens and `KEY=VALUE` settings → config options."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    options, index = {}, 0
    pairs = [(s.partition("=")[0], [s.partition("=")[2]]) for s in settings]
    if any("=" not in s for s in settings):
        raise CliError("--set takes key=value")
    while index < len(tokens):
        token = tokens[index]
        if not token.startswith("--"):
            raise CliError(f"unexpected argument {token!r}")
        key, _, inline = token[2:].partition("=")
        values, index = ([inline] if inline else []), index + 1
        while not inline and index < len(tokens) and not tokens[index].startswith("--"):
            values.append(tokens[index])
            index += 1
        pairs.append((key, values))
    for key, values in pairs:
        name = key.replace("-", "_")
        name, fixed = ALIASES.get(name, (name, None))
        if name not in fields:
            raise CliError(f"unknown option --{key} for {config_class.__name__}; options: "
                           + ", ".join("--" + f.replace("_", "-") for f in sorted(fields)))
        options[name] = fixed if fixed is not None and not values else \
            _convert(fields[name], values, key)
    return options


def run_training(family_name: str, options: dict, output: str | None, quiet: bool) -> dict:
    from codec.families import get_family  # pylint: disable=import-outside-toplevel
    try:
        family = get_family(family_name)
    except ValueError as error:
        raise CliError(str(error)) from None
    config = family.make_config(options, verbose=0 if quiet else 2)
    target = Path(output or f"models/{family.name}/lmbda_{config.lmbda:g}")
    print(f"training {family.name} λ={config.lmbda:g} → {target}", flush=True)
    summary = family.train_from_config(config, target)
    last = {key: values[-1] for key, values in summary.get("history", {}).items() if values}
    if last:
        print("last epoch: " + ", ".join(f"{k} {v:.4g}" for k, v in last.items()))
    print(f"SavedModel: {target / 'saved_model'}   TensorBoard: tensorboard --logdir "
          f"{target / 'logs'}")
    return summary


def cmd_train(args) -> None:
    from codec.families import get_family  # pylint: disable=import-outside-toplevel
    try:
        family = get_family(args.family)
    except ValueError as error:
        raise CliError(str(error)) from None
    options = parse_options(family.config_class, args.extra, args.set or [])
    run_training(args.family, options, args.output, args.quiet)


def add_train_parser(sub) -> None:
    names = "mnist, bls2017, bmshj2018-hyperprior, mbt2018-mean"   # codec/families (no TF here)
    p = sub.add_parser("train", help=f"train one codec of a family ({names}) for one λ",
                       description=__doc__.split("\n\n")[1] if "\n\n" in __doc__ else None)
    p.add_argument("family", help=f"codec family: {names} (codec/families)")
    p.add_argument("--output", help="output dir (default models/<family>/lmbda_<λ>)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any training option, e.g. --set epochs=3")
    p.add_argument("--quiet", action="store_true", help="no per-epoch output")
    p.set_defaults(func=cmd_train, takes_extra=True)


# --------------------------------------------------------------------------- train-zoo
def cmd_train_zoo(args) -> None:
    """`rdpipe train-zoo`: the Ballé 2017 ladder as one resumable job (codec/ladder.py)."""
    import dataclasses as dc  # pylint: disable=import-outside-toplevel
    from codec.eval import image_eval  # pylint: disable=import-outside-toplevel
    from codec.ladder import (COMPRESSAI_MS_SSIM_LAMBDAS, LadderConfig,  # pylint: disable=import-outside-toplevel
                              cache_root, run_ladder)
    from codec.models.bls2017_train import ImageTrainConfig  # pylint: disable=import-outside-toplevel
    if args.threads:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    defaults = LadderConfig()
    options = parse_options(ImageTrainConfig, args.extra, args.set or [])
    ms_ssim = options.get("distortion") == "ms-ssim"
    if ms_ssim:   # five MS-SSIM scales need ≥ 176-px crops; CompressAI trains on 256²
        options.setdefault("patch_size", 256)
    base = dc.replace(defaults.base, **options)
    # A hyperprior ladder (`--architecture hyperprior`) lives beside the factorized one, an
    # MS-SSIM ladder beside its MSE one, whose anchor starts it (when trained).
    name = args.name or {"hyperprior": "bmshj2018-hyperprior",
                         "mean-scale": "mbt2018-mean"}.get(base.architecture, defaults.name)
    anchor_init_from = args.anchor_init_from
    if ms_ssim:
        mse_anchor = cache_root() / "ladders" / name / f"anchor_l{defaults.anchor_lmbda:g}"
        if anchor_init_from is None and (mse_anchor / "summary.json").exists():
            anchor_init_from = str(mse_anchor)
        name = args.name or f"{name}-msssim"
    ladder = dc.replace(defaults, base=base, **{k: v for k, v in {
        "name": name, "anchor_steps": args.anchor_steps,
        "finetune_steps": args.finetune_steps,
        "finetune_warmup_steps": args.finetune_warmup_steps,
        "anchor_lmbda": args.anchor_lambda or (COMPRESSAI_MS_SSIM_LAMBDAS[3] if ms_ssim else None),
        "anchor_init_from": anchor_init_from,
        "lambdas": tuple(args.lambdas) if args.lambdas else (
            COMPRESSAI_MS_SSIM_LAMBDAS if ms_ssim else None),
        "probe_every": args.probe_every, "probe_images": args.probe_images}.items()
        if v is not None})
    root = Path(args.root) if args.root else cache_root() / "ladders" / ladder.name
    probe = image_eval.load_images(Path(args.kodak), ladder.probe_images) \
        if ladder.probe_images else None
    print(f"ladder {ladder.name} → {root}", flush=True)
    run_ladder(ladder, root, hours=args.hours, probe_images=probe)


def add_train_zoo_parser(sub) -> None:
    p = sub.add_parser(
        "train-zoo", help="train the Ballé 2017 quality ladder (anchor, then every λ) as one "
                          "resumable job",
        description="Trains the anchor model, then fine-tunes every λ of the ladder from it, "
                    "checkpointing every --checkpoint-minutes (10) into $RDPIPE_CACHE "
                    "(~/.cache/rdpipe) and resuming exactly where a previous run stopped. "
                    "Any option of `rdpipe train bls2017` (e.g. --precision-policy '' "
                    "--learning-rate 2e-4 --schedule constant --train-dir A B) sets the "
                    "training recipe of every model; --architecture hyperprior (mean-scale) "
                    "trains the scale (mean-scale) hyperprior ladder instead; --distortion ms-ssim an MS-SSIM ladder "
                    "(CompressAI's MS-SSIM λ, 256² crops) fine-tuned from the MSE anchor.")
    p.add_argument("--hours", type=float, help="stop (checkpointed) after this many hours")
    p.add_argument("--threads", type=int, default=0,
                   help="TF intra-op threads (default: TF's choice, all cores)")
    p.add_argument("--root", help="ladder directory (default $RDPIPE_CACHE/ladders/NAME)")
    p.add_argument("--name", help="ladder name (default bls2017; bmshj2018-hyperprior or "
                                  "mbt2018-mean with --architecture hyperprior / mean-scale)")
    p.add_argument("--lambdas", type=float, nargs="+", help="λ of the rungs (default: "
                   "CompressAI's 8 MSE λ, 0.0018 … 0.18)")
    p.add_argument("--anchor-lambda", type=float, help="λ of the anchor (default 0.013)")
    p.add_argument("--anchor-steps", type=int, help="anchor steps (default 150,000)")
    p.add_argument("--anchor-init-from", help="trained model dir that starts the anchor "
                   "(default: from scratch; with --distortion ms-ssim, the MSE ladder's anchor "
                   "when it is trained)")
    p.add_argument("--finetune-steps", type=int, help="steps per λ (default 30,000)")
    p.add_argument("--finetune-warmup-steps", type=int,
                   help="learning-rate warm-up of each λ's fine-tune (default 500)")
    p.add_argument("--probe-every", type=int, help="steps between learning-curve probes "
                                                   "(default 5,000)")
    p.add_argument("--probe-images", type=int, help="Kodak images per probe (default 4; 0: "
                                                    "no learning curve)")
    p.add_argument("--kodak", default=str(KODAK), help="Kodak folder (probes only)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any training option, e.g. --set precision_policy=")
    p.set_defaults(func=cmd_train_zoo, takes_extra=True)
