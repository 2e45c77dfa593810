"""BD-rate tables and the published Kodak reference curves (codec/eval/rd_report.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from codec.eval import rd_report

REFERENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "reference" / \
    "kodak_published.json"


def _shifted(curve, factor):
    return [{**p, "bpp": p["bpp"] * factor, "parameter": i, "encode_seconds": .1,
             "decode_seconds": .2} for i, p in enumerate(curve)]


def test_published_curves_are_complete_and_agree_with_each_other():
    curves = rd_report.load_published_curves(REFERENCE)
    bls2017 = curves["bls2017_published"]
    assert len(bls2017) == 8 and all("ms_ssim" in p for p in bls2017)
    assert all(a["bpp"] < b["bpp"] and a["psnr"] < b["psnr"] for a, b in zip(bls2017, bls2017[1:]))
    # CompressAI's re-implementation of the same model family is within a few percent of it.
    psnr, _, _ = rd_report.bd_rate_table(curves["compressai_bmshj2018_factorized"],
                                      {"bls2017": bls2017})
    assert abs(psnr["bls2017"]) < 10


def test_bd_rate_table_of_a_curve_at_80_percent_of_the_rate():
    bls2017 = rd_report.load_published_curves(REFERENCE)["bls2017_published"]
    ours = _shifted(bls2017, .8)
    no_ssim = [{"bpp": p["bpp"], "psnr": p["psnr"]} for p in bls2017]
    far = [{**p, "psnr": p["psnr"] + 100} for p in bls2017]       # no overlap in quality
    dominated = {**ours[3], "bpp": ours[5]["bpp"], "parameter": 99}   # more bits, less PSNR
    psnr, ssim, overlap = rd_report.bd_rate_table(
        ours + [dominated], {"ref": bls2017, "no_ssim": no_ssim, "far": far})
    assert psnr["ref"] == pytest.approx(-20, abs=1e-6)
    assert ssim["ref"] == pytest.approx(-20, abs=1e-6)
    assert psnr["no_ssim"] == pytest.approx(-20, abs=1e-6) and ssim["no_ssim"] is None
    assert psnr["far"] is None and overlap["far"] is None
    assert overlap["ref"] == [26.78, 40.13]
    table = rd_report.markdown_report(psnr, ssim, ours, overlap)
    assert "| ref | -20.0 % | 26.78–40.13 | -20.0 % |" in table
    assert "| far | n/a | none | -20.0 % |" in table     # its MS-SSIM does overlap
    model_rows = [line for line in table.splitlines() if line[2:3].isdigit()]
    assert len(model_rows) == len(ours)


def test_ms_ssim_db_matches_tfc_convention():
    assert rd_report.ms_ssim_db(.99) == pytest.approx(20.)
    assert rd_report.ms_ssim_db(1.) == pytest.approx(100.)


def test_bd_rate_refuses_curves_that_do_not_rise_in_rate_and_quality():
    from codec.eval.image_eval import bd_rate
    rising = [(.1, 25.), (.2, 27.), (.4, 29.), (.8, 31.)]
    bent = [(.1, 25.), (.2, 27.), (.4, 26.5), (.8, 31.)]
    with pytest.raises(ValueError, match="Pareto front"):
        bd_rate(rising, bent)


def test_bd_rate_from_bjontegaard_matches_the_committed_kodak_numbers():
    """kodak.json's BD-rates were computed by rdpipe's own PCHIP integration before it moved
    to the `bjontegaard` package: the package reproduces every one of them within 0.1 %."""
    import json
    report = json.loads((Path(__file__).resolve().parent.parent / "benchmarks" / "results"
                         / "kodak.json").read_text())
    psnr, ms_ssim, _ = rd_report.bd_rate_table(report["rdpipe"], report["baselines"])
    checked = 0
    for table, committed in ((psnr, report["bd_rate_psnr"]), (ms_ssim, report["bd_rate_ms_ssim"])):
        for name, value in table.items():
            if value is not None:
                assert value == pytest.approx(committed[name], rel=1e-3, abs=1e-3), name
                checked += 1
    assert checked >= 8


def test_eval_command_on_a_shipped_model(tmp_path):
    """`rdpipe eval --models` on two Kodak crops and then on 2 Kodak images, where the
    published curves join the table and the plot."""
    import json
    from PIL import Image
    from cli.main import main
    from codec import zoo
    kodak = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
    model = str(zoo.resolve_model("bls2017-q1"))
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    for i, name in enumerate(["kodim01.png", "kodim02.png"]):
        with Image.open(kodak / name) as image:       # MS-SSIM needs ≥ 161 px
            image.convert("RGB").crop((0, 0, 192, 176)).save(evaluation / f"{i}.png")
    out = tmp_path / "rd.json"
    assert main(["eval", "--models", model, "--codec", "jpeg", "--images", str(evaluation),
                 "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    point = report["codecs"]["rdpipe"]["points"][0]
    assert point["bpp"] > 0 and point["encode_seconds"] > 0 and point["decode_seconds"] > 0
    assert 20 < point["psnr"] < 45
    assert report["bd_rate_psnr"] == {"jpeg": None}     # one model: no curve to BD-rate yet
    kodak_out = tmp_path / "kodak.json"
    assert main(["eval", "--models", model, "--codec", "jpeg", "--images", str(kodak),
                 "--limit", "2", "--output", str(kodak_out)]) == 0
    report = json.loads(kodak_out.read_text())
    assert report["count"] == 2
    assert set(report["bd_rate_psnr"]) == {"jpeg", "bls2017_published",
                                           "compressai_bmshj2018_factorized"}
    assert "bls2017_published" in kodak_out.with_suffix(".md").read_text()
    assert kodak_out.with_suffix(".png").stat().st_size > 10_000
