"""`rdpipe serve`, `rdpipe client …` and `rdpipe audit-ops`: the serving side of the CLI."""
from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import CliError, read_images
from cli.photos import add_compress_options, add_decompress_options, add_quality_options

# Pixels one decompress request may claim in all (`rdpipe serve --max-decoded-pixels`): one
# image of the largest size a string may claim (codec/entropy/framing.py MAX_PIXELS).
DEFAULT_MAX_DECODED_PIXELS = 4096 * 4096


def cmd_serve(args) -> None:
    import logging
    import threading

    from serving.batching import BatchingParameters
    from serving.models import ModelRegistry
    from serving.observability import configure_logging
    from serving.server import ModelServer, ServerOptions

    configure_logging(args.log_format, logging.DEBUG if args.log_requests else logging.INFO)
    batching = None
    if args.enable_batching or args.batching_parameters_file:
        batching = (BatchingParameters.from_text(Path(args.batching_parameters_file).read_text())
                    if args.batching_parameters_file else
                    BatchingParameters(args.max_batch_size, args.batch_timeout_micros))
    if args.zoo:
        import tempfile
        from codec.zoo import serving_layout
        if args.model_base_path:
            raise CliError("give --zoo or --model-base-path, not both")
        args.model_base_path = tempfile.mkdtemp(prefix="rdpipe-zoo-")
        if not serving_layout(Path(args.model_base_path)):
            raise CliError("the zoo is empty: make bench-kodak && make zoo")
    elif not args.model_base_path:
        raise CliError("give --model-base-path DIR (models as <name>/<version>/) or --zoo")
    registry = ModelRegistry(args.model_base_path, num_versions=args.num_versions,
                             versions=_pinned_versions(args.model_version))
    registry.refresh()
    registry.start_polling(args.poll_seconds)
    options = ServerOptions(host=args.host, port=args.port,
                            rest_port=args.rest_port,
                            max_request_bytes=args.max_request_bytes, batching=batching,
                            ssl_cert=args.ssl_cert, ssl_key=args.ssl_key,
                            request_guard=decode_work_guard(args.max_decoded_pixels))
    server = ModelServer(registry, options).start()
    scheme = "https" if args.ssl_cert else "http"
    print(f"serving {args.model_base_path}: gRPC {args.host}:{server.port}, REST "
          f"{scheme}://{args.host}:{server.rest_port}/v1/models/<name>, metrics "
          f"/monitoring/prometheus/metrics"
          + (f", batching {batching}" if batching else "") + " (Ctrl-C stops)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop(grace=2)


def decode_work_guard(max_decoded_pixels: int = DEFAULT_MAX_DECODED_PIXELS):
    """The server's request guard for codec models (`serving.predict.RequestGuard`): before any
    decoding, refuses a decompress request whose strings claim more than `max_decoded_pixels`
    in all (RESOURCE_EXHAUSTED) or a string too short for the image size it claims
    (`decompress`: INVALID_ARGUMENT; `decompress_unchecked`, which never fails on content: the
    string is replaced by an empty one, decoded as a not-ok 1×1 image). Any-size image models
    with the portable coder only (fixed-size models claim no size)."""
    import numpy as np
    from codec.entropy.coders import coder_of_string
    from codec.saved_codec import claimed_sizes_and_short_strings
    from serving.predict import RequestError

    def guard(module, functions: dict, signature: str, arrays: dict) -> dict:
        if signature not in ("decompress", "decompress_unchecked") or "strings" not in arrays:
            return arrays
        compress = functions.get("compress")
        images = compress.structured_input_signature[1].get("images") if compress else None
        if (images is None or images.shape[1] is not None
                or not hasattr(getattr(module, "entropy_model", None), "_cdf")):
            return arrays
        strings = [bytes(s) for s in arrays["strings"].reshape(-1)]
        if not strings or any(coder_of_string(s) != "portable" for s in strings if s):
            return arrays
        pixels, short = claimed_sizes_and_short_strings(module, strings)
        if int(pixels.sum()) > max_decoded_pixels:
            raise RequestError("RESOURCE_EXHAUSTED", f"the strings claim {int(pixels.sum()):,} "
                               f"pixels in all, over this server's --max-decoded-pixels "
                               f"{max_decoded_pixels:,}; send fewer or smaller images")
        if short.any() and signature == "decompress":
            raise RequestError("INVALID_ARGUMENT", f"strings {np.flatnonzero(short)[:10].tolist()}"
                               " are too short for the image size they claim (corrupt or "
                               "hostile); refused before decoding")
        return {**arrays, "strings": np.array([b"" if bad else s for s, bad in zip(strings, short)],
                                              dtype=object)}
    return guard


def _pinned_versions(specs: list[str] | None) -> dict[str, list[int]]:
    """`NAME=V[,V...]` flags → {name: [versions]}."""
    pinned = {}
    for spec in specs or []:
        name, _, versions = spec.partition("=")
        if not versions:
            raise SystemExit(f"--model-version expects NAME=V[,V...], got {spec!r}")
        pinned[name] = [int(v) for v in versions.split(",")]
    return pinned


def cmd_client(args) -> None:
    import grpc
    try:
        _run_client(args)
    except grpc.RpcError as error:  # the server's message is written for the user
        raise CliError(f"{args.server}: {error.code().name}: {error.details()}") from None


DEFAULT_CLIENT_MODEL = "mnist_l2000"


def _connect(args, model: str):
    from serving.client import CodecClient
    return CodecClient(args.server, model, args.version, timeout=args.timeout,
                       ssl_ca=args.ssl_ca)


def _served_ladder(args):
    """`--target-bpp`: the served models to choose among, lowest quality first (`--ladder`,
    else the local zoo's names of `--family`, as `rdpipe serve --zoo` serves them)."""
    from cli.photos import family_names
    from cli.served_codec import ServedCodec
    from codec.photo_codec import ModelLadder
    names = [n for n in (args.ladder or "").split(",") if n] or family_names(args.family)
    return ModelLadder(names, lambda name: ServedCodec(_connect(args, name)))


def _run_client(args) -> None:
    from PIL import Image
    from cli.photos import check_target_bpp, quality_model, zoo_family

    choosing = getattr(args, "quality", None) or getattr(args, "target_bpp", None) is not None
    if choosing and args.model:
        raise CliError("give one of --model, --quality, --target-bpp")
    if choosing:
        args.family = args.family or zoo_family()
    if getattr(args, "quality", None):
        args.model = quality_model(args.family, args.quality)
    args.model = args.model or DEFAULT_CLIENT_MODEL
    client = _connect(args, args.model)   # unused with --target-bpp (one client per model)
    if args.client_command == "status":
        for version, state, error in client.status():
            print(f"{args.model} version {version}: {state}" + (f" ({error})" if error else ""))
        return
    out_dir = Path(args.output_dir)
    if args.client_command in ("compress", "decompress"):
        from cli.served_codec import ServedCodec
        from cli.photos import compress_files, decompress_files
        from codec.photo_codec import ModelLadder
        if args.client_command == "compress" and args.target_bpp is not None:
            check_target_bpp(args.target_bpp)
            backend = client = _served_ladder(args)
            print(f"--target-bpp {args.target_bpp:g}: choosing per file among "
                  f"{', '.join(backend.names)} on {args.server}")
        else:
            backend = ServedCodec(client)
        if args.client_command == "compress":
            compress_files(backend, args.inputs, out_dir, tile=args.tile, metrics=args.metrics,
                           quiet=args.quiet, target_bpp=args.target_bpp)
        else:
            decompress_files(lambda header: backend, args.inputs, out_dir,
                             image_format=args.format, raw=args.raw, quiet=args.quiet,
                             max_pixels=args.max_pixels)
        if not isinstance(client, ModelLadder):
            print(f"round trip to {args.server}: {client.last_seconds * 1000:.1f} ms "
                  "(last call)")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    # svd
    items = read_images([Path(p) for p in args.inputs])
    rank = None if args.compression_factor or args.energy_factor else args.rank
    # The file name says how the rank was chosen and which rank it was.
    choice = (f"cf{args.compression_factor:g}" if args.compression_factor else
              f"ef{args.energy_factor:g}" if args.energy_factor else "rank")
    for name, image in items:
        out = client.svd(image[None], rank, compression_factor=args.compression_factor,
                         energy_factor=args.energy_factor)
        used = int(out["ranks"][0])
        reconstruction = out["reconstruction"][0]
        target = out_dir / (f"{name}_rank{used}.png" if choice == "rank" else
                            f"{name}_{choice}_rank{used}.png")
        Image.fromarray(reconstruction[..., 0] if reconstruction.shape[-1] == 1
                        else reconstruction).save(target)
        print(f"{name}: rank {used} of {min(image.shape[:2])}, {image.shape[-1]} channel(s), "
              f"{int(out['stored_size'][0])} numbers stored for {image.size} values → {target}")
    print(f"round trip to {args.server}: {client.last_seconds * 1000:.1f} ms (last call)")


def cmd_audit_ops(args) -> None:
    from serving.ops_audit import audit
    custom = set()
    for signature, ops in audit(args.model_dir).items():
        custom |= set(ops)
        print(f"{signature}: " + (", ".join(ops) + " (not in stock TensorFlow)" if ops
                                  else "stock TensorFlow ops only"))
    print("→ " + ("needs rdpipe serve (or a TF Serving built with these ops)" if custom
                  else "loadable by stock TensorFlow Serving"))


def add_serving_parsers(sub) -> None:
    p = sub.add_parser("serve", help="TF-Serving-API server (gRPC + REST) for pushed models")
    p.add_argument("--model-base-path",
                   help="directory of models: <base>/<name>/<version>/saved_model.pb")
    p.add_argument("--zoo", action="store_true",
                   help="serve the model zoo (bls2017-q1 … as <name>/1); for a stock TF "
                        "Serving, `rdpipe zoo serving-layout DIR` writes the same layout")
    p.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    p.add_argument("--port", type=int, default=8500, help="gRPC port (0: any free port)")
    p.add_argument("--rest-port", type=int, default=8501, help="REST + metrics port")
    p.add_argument("--num-versions", type=int, default=1, help="latest N versions per model")
    p.add_argument("--max-decoded-pixels", type=int, default=DEFAULT_MAX_DECODED_PIXELS,
                   metavar="N",
                   help="pixels one decompress request may claim in all, checked before "
                        "decoding (default 16,777,216: one 4096×4096 image)")
    p.add_argument("--model-version", action="append", metavar="NAME=V[,V...]",
                   help="serve these versions of NAME instead of the latest (repeatable)")
    p.add_argument("--poll-seconds", type=float, default=1.0,
                   help="how often the base path is rescanned for new versions")
    p.add_argument("--max-request-bytes", type=int, default=64 << 20,
                   help="max gRPC message / REST body, bytes (default 64 MiB: a 4K RGB image)")
    p.add_argument("--enable-batching", action="store_true",
                   help="dynamic batching of concurrent Predict requests")
    p.add_argument("--max-batch-size", type=int, default=32, help="examples per batch")
    p.add_argument("--batch-timeout-micros", type=int, default=2000,
                   help="max wait of the oldest queued request, µs")
    p.add_argument("--batching-parameters-file",
                   help="TF Serving batching_parameters text proto (implies batching)")
    p.add_argument("--ssl-cert", help="PEM certificate chain: TLS on gRPC and REST")
    p.add_argument("--ssl-key", help="PEM private key for --ssl-cert")
    p.add_argument("--log-format", choices=["json", "text"], default="json")
    p.add_argument("--log-requests", action="store_true", help="log every request (debug)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("client", help="call a running server (rdpipe serve or TF Serving)")
    client_sub = p.add_subparsers(dest="client_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", default="127.0.0.1:8500")
    common.add_argument("--model", default=None,
                        help=f"served model name (default {DEFAULT_CLIENT_MODEL})")
    common.add_argument("--version", type=int, default=None)
    common.add_argument("--timeout", type=float, default=30.)
    common.add_argument("--ssl-ca", help="PEM CA certificate: connect with TLS")
    for name, help_text in (("compress", "photos → .bin via the compress signature (follows "
                                         "the model's channels and size)"),
                            ("decompress", ".bin → PNG via the decompress signature"),
                            ("svd", "images → rank-r approximations (svd_approximate)")):
        q = client_sub.add_parser(name, parents=[common], help=help_text)
        q.add_argument("inputs", nargs="+")
        if name == "compress":
            add_compress_options(q)
            quality = q.add_mutually_exclusive_group()
            add_quality_options(quality)
            q.add_argument("--family", default=None,
                           help="--quality K asks for model <family>-qK; --target-bpp chooses "
                                "among the family's zoo names (default: the zoo's family)")
            q.add_argument("--ladder", metavar="NAME,NAME,…",
                           help="--target-bpp: served model names, lowest quality first "
                                "(default: the zoo's names of --family)")
        if name == "decompress":
            q.add_argument("--raw", action="store_true",
                           help="inputs are raw signature strings without the rdpipe header")
            add_decompress_options(q)
        if name == "svd":
            q.add_argument("--output-dir", default="client-out")
            how = q.add_mutually_exclusive_group()
            how.add_argument("--rank", type=int, default=8)
            how.add_argument("--compression-factor", type=float,
                             help="in (0, 1]: largest rank storing ≤ this fraction of the pixels")
            how.add_argument("--energy-factor", type=float,
                             help="in (0, 1]: smallest rank reaching this singular-value share")
        q.set_defaults(func=cmd_client)
    q = client_sub.add_parser("status", parents=[common], help="model version states")
    q.set_defaults(func=cmd_client)

    p = sub.add_parser("audit-ops", help="list ops of a SavedModel that stock TF Serving lacks")
    p.add_argument("model_dir", help="SavedModel directory (…/<name>/<version>)")
    p.set_defaults(func=cmd_audit_ops)
