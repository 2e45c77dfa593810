"""The reference side of `make bench-race`: Ballé et al. 2017 built from TensorFlow
Compression's own library classes, trained as TFC's `models/bls2017.py` trains it.

Runs in .venv-peer (TensorFlow 2.14.1 + tensorflow-compression 2.14.1; never a dependency of
rdpipe). The model uses `tfc.SignalConv2D` with TFC's defaults (RDFT kernels, variance-scaling
init, "same_zeros" padding), `tfc.GDN`, `tfc.NoisyDeepFactorized` and
`tfc.ContinuousBatchedEntropyModel`; the loss is `bpp + λ·MSE` on 0–255 pixels and the optimizer
Adam(1e-4), as in TFC's script. Crops, step count and evaluation come from
benchmarks/race_loop.py, shared with rdpipe's side. Evaluation codes each Kodak image with the
entropy model in compression mode (TFC's range coder) and counts the string's bytes.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import race_loop  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_compression as tfc  # noqa: E402


def analysis_transform(filters: int) -> tf.keras.Sequential:
    def conv(kernel, stride, bias, activation):
        return tfc.SignalConv2D(filters, (kernel, kernel), corr=True, strides_down=stride,
                                padding="same_zeros", use_bias=bias, activation=activation)
    return tf.keras.Sequential([
        tf.keras.layers.Lambda(lambda x: x / 255.),
        conv(9, 4, True, tfc.GDN()),
        conv(5, 2, True, tfc.GDN()),
        conv(5, 2, False, None),
    ])


def synthesis_transform(filters: int) -> tf.keras.Sequential:
    def conv(out, kernel, stride, activation):
        return tfc.SignalConv2D(out, (kernel, kernel), corr=False, strides_up=stride,
                                padding="same_zeros", use_bias=True, activation=activation)
    return tf.keras.Sequential([
        conv(filters, 5, 2, tfc.GDN(inverse=True)),
        conv(filters, 5, 2, tfc.GDN(inverse=True)),
        conv(3, 9, 4, None),
        tf.keras.layers.Lambda(lambda x: x * 255.),
    ])


class Reference:
    """Transforms, prior and optimizer of TFC's bls2017 model script."""

    def __init__(self, lmbda: float, filters: int):
        self.lmbda = lmbda
        self.analysis = analysis_transform(filters)
        self.synthesis = synthesis_transform(filters)
        self.prior = tfc.NoisyDeepFactorized(batch_shape=(filters,))
        self.analysis.build((None, None, None, 3))
        self.synthesis.build((None, None, None, filters))
        self.variables = (self.analysis.trainable_variables
                          + self.synthesis.trainable_variables
                          + list(self.prior.trainable_variables))
        self.optimizer = tf.keras.optimizers.Adam(learning_rate=1e-4)

    @tf.function
    def train_step(self, x):
        x = tf.cast(x, tf.float32)
        entropy_model = tfc.ContinuousBatchedEntropyModel(self.prior, coding_rank=3,
                                                          compression=False)
        with tf.GradientTape() as tape:
            y = self.analysis(x)
            y_hat, bits = entropy_model(y, training=True)
            x_hat = self.synthesis(y_hat)
            pixels = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), bits.dtype)
            bpp = tf.reduce_sum(bits) / pixels
            mse = tf.reduce_mean(tf.math.squared_difference(x, x_hat))
            loss = bpp + self.lmbda * mse
        self.optimizer.apply_gradients(zip(tape.gradient(loss, self.variables), self.variables))
        return {"loss": loss, "bpp": bpp, "mse": mse}

    def codec(self):
        """compress → decompress of each image with TFC's range coder (fixed tables)."""
        entropy_model = tfc.ContinuousBatchedEntropyModel(self.prior, coding_rank=3,
                                                          compression=True)

        @tf.function(input_signature=[tf.TensorSpec((None, None, 3), tf.uint8)])
        def round_trip(image):
            x = tf.cast(image[None], tf.float32)
            y = self.analysis(x)
            string = entropy_model.compress(y)
            y_hat = entropy_model.decompress(string, tf.shape(y)[1:-1])
            x_hat = self.synthesis(y_hat)[0, :tf.shape(image)[0], :tf.shape(image)[1]]
            return string[0], tf.saturate_cast(tf.round(x_hat), tf.uint8)

        def encode(images):
            out = [round_trip(tf.constant(image)) for image in images]
            return [s.numpy() for s, _ in out], [d.numpy() for _, d in out]
        return encode


def ms_ssim(original, decoded) -> float:
    return float(tf.image.ssim_multiscale(tf.constant(original, tf.float32),
                                          tf.constant(decoded, tf.float32), max_val=255.))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    race_loop.add_arguments(parser)
    args = parser.parse_args(argv)
    race_loop.set_threads(tf, args.threads)
    tf.random.set_seed(args.seed)
    args.flips = bool(args.flips)
    model = Reference(args.lmbda, args.filters)
    kodak = race_loop.load_kodak(args.kodak, args.kodak_limit)

    def step(batch, step_number):   # TFC's noise comes from TF's global RNG
        return {k: float(v) for k, v in model.train_step(tf.constant(batch)).items()}

    checkpoint = tf.train.Checkpoint(analysis=model.analysis, synthesis=model.synthesis,
                                     prior=model.prior, optimizer=model.optimizer)
    manager = tf.train.CheckpointManager(checkpoint, args.checkpoint_dir, max_to_keep=2)
    result = race_loop.run(args, step, model.codec, ms_ssim, kodak,
                           race_loop.Checkpoints(manager, args.checkpoint_dir))
    if result is None:
        return 3                     # stopped at the deadline: run again to continue
    result.update(library=f"tensorflow-compression (TF {tf.__version__})", optimizer="Adam 1e-4",
                  settings="TFC's models/bls2017.py: Adam 1e-4 constant, float32")
    race_loop.write(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
