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

from components.mnist_example_gen import MnistExampleGen, mnist_input_config

ROOT = Path(__file__).resolve().parent.parent
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"


def _span(data: Path, span: int) -> None:
    folder = data / f"span-{span}"
    folder.mkdir(parents=True)
    for path in SHARED_MNIST.glob("*-ubyte*"):
        (folder / path.name).symlink_to(path)


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
    _span(data, 1)
    _span(data, 2)
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
