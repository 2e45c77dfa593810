"""The SVD codec (codec/linalg/svd_codec.py): real strings, exact decoder agreement, robust decoding;
and the image CLI (`rdpipe eval`, `rdpipe svd-report`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec.eval import image_eval

from codec.linalg import svd_codec
from codec.entropy.entropy_models import DecodeError
from cli.main import main

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    return np.asarray(Image.open(KODAK / "kodim23.png").convert("RGB"))[100:292, 200:392]


@pytest.mark.parametrize("coder", ["portable", "tfc"])
def test_strings_decode_to_the_encoders_reconstruction(crop, coder):
    encoded = svd_codec.encode(crop, 12, .5, coder=coder)
    decoded = svd_codec.decode(encoded.string)
    np.testing.assert_array_equal(decoded, encoded.reconstruction)
    assert decoded.shape == crop.shape and decoded.dtype == np.uint8
    assert image_eval.psnr(crop, decoded) > 20
    # More rank → more bytes and less error.
    bigger = svd_codec.encode(crop, 40, .5, coder=coder)
    assert len(bigger.string) > len(encoded.string)
    assert image_eval.psnr(crop, bigger.reconstruction) > image_eval.psnr(crop, decoded)


def test_corrupt_strings_raise_decode_errors_and_never_crash(crop):
    string = svd_codec.encode(crop, 6, 1.).string
    rng = np.random.default_rng(0)
    cases = [b"", b"S", b"X\x01", string[:5], string[:len(string) // 2], string + b"\x00",
             b"S\x01" + b"\xff" * 8] + [rng.bytes(int(n)) for n in rng.integers(1, 200, 100)]
    for i in range(30):       # each decodes both factors (~0.25 s): 30 keep the test short
        damaged = bytearray(string)
        damaged[int(rng.integers(len(damaged)))] ^= 1 << int(rng.integers(8))
        cases.append(bytes(damaged))
    failures = 0
    for case in cases:
        try:
            out = svd_codec.decode(case)
            assert out.dtype == np.uint8
        except DecodeError:
            failures += 1
    assert failures >= 105            # random and truncated strings: always refused


@pytest.mark.parametrize("kwargs, message", [
    ({"rank": 0, "step": 1.}, "rank must be"), ({"rank": 500, "step": 1.}, "rank must be"),
    ({"rank": 4, "step": 1e6}, "step"),
])
def test_bad_parameters_are_refused(crop, kwargs, message):
    with pytest.raises(ValueError, match=message):
        svd_codec.encode(crop, **kwargs)
    with pytest.raises(ValueError, match="uint8"):
        svd_codec.encode(crop.astype(np.float32), 4, 1.)


def test_eval_cli_writes_rd_json_and_plot(crop, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(crop).save(folder / "a.png")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "rd.json"
    assert main(["eval", "--codec", "jpeg", "svd", "--images", str(folder), "--bd-codec", "svd",
                 "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["bd_rate_of"] == "svd" and set(result["bd_rate_psnr"]) == {"jpeg"}
    assert "| svd vs |" in out.with_suffix(".md").read_text()
    assert main(["eval", "--codec", "jpeg", "--images", str(folder), "--bd-codec", "webp",
                 "--output", str(out)]) == 2            # not evaluated: a clear error
    jpeg = result["codecs"]["jpeg"]["points"]
    assert [p["parameter"] for p in jpeg] == image_eval.DEFAULT_POINTS["jpeg"]
    assert all(0 < p["bpp"] < 24 and 0 < p["ms_ssim"] <= 1 for p in jpeg)
    front = result["codecs"]["svd"]["front"]
    assert [p["bpp"] for p in front] == sorted(p["bpp"] for p in front)
    assert out.with_suffix(".png").stat().st_size > 0
    assert main(["eval", "--images", str(tmp_path / "nope"), "--output", str(out)]) == 2


def test_svd_command_chooses_ranks_by_rank_or_factor_and_reports_what_it_wrote(tmp_path,
                                                                               capsys):
    from PIL import Image
    from codec.linalg import svd
    image = KODAK / "kodim05.png"
    assert main(["svd", str(image), "--rank", "3", "40", "--compression-factor", ".15",
                 "--energy-factor", ".9", "--output-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "kodim05_svd.json").read_text())
    rows = {r["choice"]: r for r in report["approximations"]}
    assert list(rows) == ["rank3", "rank40", "cf0.15", "ef0.9"]
    assert rows["cf0.15"]["rank"] == int(svd.rank_from_compression_factor(.15, 512, 768))
    assert rows["cf0.15"]["compression_factor"] <= .15
    assert rows["ef0.9"]["energy_factor"] >= .9
    original = np.asarray(Image.open(image).convert("RGB")).astype(np.float64)
    for row in rows.values():
        written = np.asarray(Image.open(row["output"])).astype(np.float64)
        assert written.shape == original.shape                       # colour kept
        measured = ((original - written) ** 2).sum(axis=(0, 1))
        np.testing.assert_allclose(row["frobenius_error_squared_per_channel"], measured)
        optimal = row["optimal_frobenius_error_squared_per_channel_exact_svd"]
        assert all(o <= m * 1.02 for o, m in zip(optimal, measured))   # Eckart–Young (+ rounding)
    assert rows["rank3"]["psnr_db"] < rows["rank40"]["psnr_db"]
    assert len(report["singular_values"]) == 3 and len(report["singular_values"][0]) == 512
    for name in ("kodim05_spectrum.png", "kodim05_approximations.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert main(["svd", str(image), "--rank", "0", "--output-dir", str(tmp_path)]) == 2
    assert "--rank must be in [1, 512]" in capsys.readouterr().err
    assert main(["svd", str(image), "--energy-factor", "1.5"]) == 2
    assert "--energy-factor must be in (0, 1]" in capsys.readouterr().err
    (tmp_path / "bad.png").write_text("nope")
    assert main(["svd", str(tmp_path / "bad.png")]) == 2
    assert main(["svd-report", str(image), "--ranks", "4", "--output-dir",
                 str(tmp_path / "old")]) == 0                        # the older spelling


def test_svd_of_a_greyscale_image_and_of_a_plain_matrix(tmp_path):
    from PIL import Image
    grey = np.asarray(Image.open(KODAK / "kodim05.png").convert("L"))[:128, :160]
    Image.fromarray(grey).save(tmp_path / "grey.png")
    assert main(["svd", str(tmp_path / "grey.png"), "--rank", "10", "--output-dir",
                 str(tmp_path)]) == 0
    report = json.loads((tmp_path / "grey_svd.json").read_text())
    assert report["channels"] == 1 and len(report["singular_values"]) == 1   # one curve
    assert np.asarray(Image.open(tmp_path / "grey_rank10.png")).shape == (128, 160)
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(60, 8)) @ rng.normal(size=(8, 40)) + .01 * rng.normal(size=(60, 40))
    np.save(tmp_path / "m.npy", matrix)
    assert main(["svd", str(tmp_path / "m.npy"), "--rank", "8", "--energy-factor", ".5",
                 "--output-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "m_svd.json").read_text())
    assert report["kind"] == "matrix"
    approximation = np.load(tmp_path / "m_rank8.npy")
    error = ((matrix - approximation) ** 2).sum()
    assert error == pytest.approx(report["approximations"][0][
        "optimal_frobenius_error_squared_per_channel_exact_svd"][0], rel=1e-9)
    assert report["approximations"][0]["relative_frobenius_error"] < .01
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 4, 5)))
    assert main(["svd", str(tmp_path / "bad.npy")]) == 2


def test_svd_help_explains_every_option():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "cli.main", "svd", "--help"],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
                         timeout=120).stdout
    for option in ("--rank", "--compression-factor", "--energy-factor", "r·(m+n+1)",
                   "photo_cf0.15.png", ".npy"):
        assert option in out


def test_bd_rate_of_a_curve_at_half_the_rate_is_minus_50_percent():
    reference = [(r, 20 + 8 * np.log2(r)) for r in (.25, .5, 1., 2., 4.)]
    half = [(r / 2, q) for r, q in reference]
    assert image_eval.bd_rate(reference, half) == pytest.approx(-50., abs=1e-6)
    assert image_eval.bd_rate(half, reference) == pytest.approx(100., abs=1e-6)
    assert image_eval.bd_rate(reference, reference) == pytest.approx(0., abs=1e-9)
    with pytest.raises(ValueError, match="at least 4"):
        image_eval.bd_rate(reference[:3], half)


@pytest.mark.parametrize("codec", ["webp", "avif"])
def test_modern_classical_baselines_round_trip(crop, codec):
    size, decoded = image_eval.CODECS[codec](crop, 50)
    assert 0 < size < crop.size and decoded.shape == crop.shape
    assert image_eval.psnr(crop, decoded) > 25
