"""Ingestion on a real TFX LocalDagRunner run: MnistExampleGen → StatisticsGen → ImportSchemaGen
→ ExampleValidator, with spans and curated schemas (real MLMD in SQLite)."""
from __future__ import annotations

import glob
from pathlib import Path

import ml_metadata as mlmd
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx

from conftest import add_mnist_span

from components.mnist_example_gen import MnistExampleGen, mnist_input_config

ROOT = Path(__file__).resolve().parent.parent




def _ingest_pipeline(root: Path, data: Path, limit: int) -> tfx.dsl.Pipeline:
    example_gen = MnistExampleGen(input_base=str(data),
                                  input_config=mnist_input_config("span-{SPAN}"),
                                  max_examples_per_split=limit)
    statistics = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema = tfx.components.ImportSchemaGen(schema_file=str(ROOT / "schemas/mnist/schema.pbtxt"))
    validator = tfx.components.ExampleValidator(statistics=statistics.outputs["statistics"],
                                                schema=schema.outputs["schema"])
    return tfx.dsl.Pipeline(
        pipeline_name="ingest_test", pipeline_root=str(root / "root"),
        components=[example_gen, statistics, schema, validator], enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(root / "mlmd.sqlite")))


def _count(pattern: str) -> int:
    return sum(1 for _ in tf.data.TFRecordDataset(glob.glob(pattern), compression_type="GZIP"))


@pytest.mark.timeout(600)
def test_mnist_example_gen_newest_span_examples_validate_against_schema(tmp_path):
    data = tmp_path / "data"
    add_mnist_span(data, 1)
    add_mnist_span(data, 2)
    tfx.orchestration.LocalDagRunner().run(_ingest_pipeline(tmp_path, data, limit=200))

    examples_dir = glob.glob(str(tmp_path / "root/MnistExampleGen/examples/*"))
    assert len(examples_dir) == 1
    assert _count(f"{examples_dir[0]}/Split-train/*") == 200
    assert _count(f"{examples_dir[0]}/Split-eval/*") == 200
    record = next(iter(tf.data.TFRecordDataset(glob.glob(f"{examples_dir[0]}/Split-eval/*"),
                                               compression_type="GZIP")))
    example = tf.train.Example.FromString(record.numpy())
    image = tf.io.decode_png(example.features.feature["image"].bytes_list.value[0])
    assert image.shape == (28, 28, 1)
    assert 0 <= example.features.feature["label"].int64_list.value[0] <= 9

    store = mlmd.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(tmp_path / "mlmd.sqlite")))
    [artifact] = store.get_artifacts_by_type("Examples")
    assert artifact.custom_properties["span"].int_value == 2  # newest span wins

    for path in glob.glob(str(tmp_path / "root/ExampleValidator/anomalies/*/Split-*/SchemaDiff.pb")):
        anomalies = anomalies_pb2.Anomalies.FromString(Path(path).read_bytes())
        assert not anomalies.anomaly_info, dict(anomalies.anomaly_info)


def _image_pipeline(root: Path, data: Path, max_bad_fraction: float) -> tfx.dsl.Pipeline:
    from components.image_folder_example_gen import ImageFolderExampleGen
    from tfx.proto import example_gen_pb2

    example_gen = ImageFolderExampleGen(
        input_base=str(data), max_bad_fraction=max_bad_fraction,
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name="single_split", pattern="span-{SPAN}/*")]))
    statistics = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema = tfx.components.ImportSchemaGen(
        schema_file=str(ROOT / "schemas/images/schema.pbtxt"))
    validator = tfx.components.ExampleValidator(statistics=statistics.outputs["statistics"],
                                                schema=schema.outputs["schema"])
    return tfx.dsl.Pipeline(
        pipeline_name="images_test", pipeline_root=str(root / "root"),
        components=[example_gen, statistics, schema, validator],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(root / "mlmd.sqlite")))


def _image_folder(data: Path) -> Path:
    from PIL import Image
    folder = data / "span-0"
    folder.mkdir(parents=True)
    kodak = ROOT.parent / "shared" / "data" / "kodak"
    for name in ("kodim01.png", "kodim02.png", "kodim03.png", "kodim04.png"):
        (folder / name).symlink_to(kodak / name)
    with Image.open(kodak / "kodim05.png") as image:
        image.convert("L").save(folder / "gray.jpg", quality=80)
    (folder / "notes.txt").write_text("not an image")
    (folder / "truncated.png").write_bytes((kodak / "kodim06.png").read_bytes()[:5000])
    return folder


@pytest.mark.timeout(600)
def test_image_folder_example_gen_counts_bad_files_and_fails_above_threshold(tmp_path):
    data = tmp_path / "data"
    _image_folder(data)  # 5 good images, 2 bad files → 2/7 ≈ 29 % bad
    with pytest.raises(Exception, match=r"2 of 7 files .* not readable"):
        tfx.orchestration.LocalDagRunner().run(_image_pipeline(tmp_path / "strict", data, 0.1))

    tfx.orchestration.LocalDagRunner().run(_image_pipeline(tmp_path / "lenient", data, 0.5))
    splits = {split: glob.glob(str(tmp_path / f"lenient/root/ImageFolderExampleGen/examples/*/"
                                              f"Split-{split}/*")) for split in ("train", "eval")}
    records = [tf.train.Example.FromString(r.numpy()) for split in splits.values()
               for r in tf.data.TFRecordDataset(split, compression_type="GZIP")]
    assert len(records) == 5
    by_name = {r.features.feature["filename"].bytes_list.value[0].decode(): r for r in records}
    assert set(by_name) == {f"span-0/kodim0{i}.png" for i in range(1, 5)} | {"span-0/gray.jpg"}
    gray = by_name["span-0/gray.jpg"].features.feature
    assert gray["channels"].int64_list.value[0] == 1
    assert gray["format"].bytes_list.value[0] == b"jpeg"
    first = by_name["span-0/kodim01.png"].features.feature
    assert (first["height"].int64_list.value[0], first["width"].int64_list.value[0]) == (512, 768)
    for path in glob.glob(str(tmp_path / "lenient/root/ExampleValidator/anomalies/*/Split-*/"
                                         "SchemaDiff.pb")):
        anomalies = anomalies_pb2.Anomalies.FromString(Path(path).read_bytes())
        assert not anomalies.anomaly_info, dict(anomalies.anomaly_info)
