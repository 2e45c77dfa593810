"""Spectral tools: spectral normalization by power iteration, pixel normalization, and fitting a
symmetric matrix to a target spectrum by differentiating through `tf.linalg.eigh`.

- `power_iteration`: σ_max of a matrix from a persistent left vector `u` (Miyato et al. 2018:
  one iteration per training step suffices because `u` carries over between steps).
- `SpectralNormConstraint`: a Keras kernel constraint `W ← W / σ_max(W)` (applied after each
  optimizer step; `mode="clip"`: `/ max(σ_max, 1)`); `SpectralNormalization`: a layer wrapper
  that divides the kernel by σ_max in the forward pass (the gradient sees the normalization).
  Both keep `u` in a non-trainable variable that checkpoints and SavedModels carry;
  `iterations` is configurable. Kernels `[..., in, out]` are reshaped to
  `[prod(...)·in, out]`, as in Keras and TF-GAN.
- `PixelNorm`: `x / sqrt(mean(x², channels) + ε)` (Karras et al. 2018).
- `fit_spectrum`: a symmetric matrix whose eigenvalues match a target, by Adam through `eigh`.
Written here (not taken from tf_keras.layers.SpectralNormalization) because the codecs also need
the constraint form and a shared, testable power-iteration routine.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf
import tf_keras as keras


def _as_matrix(kernel: tf.Tensor) -> tf.Tensor:
    """Kernel `[..., in, out]` → `[prod(...)·in, out]`."""
    return tf.reshape(kernel, [-1, tf.shape(kernel)[-1]])


def power_iteration(matrix: tf.Tensor, u: tf.Tensor, iterations: int = 1,
                    epsilon: float = 1e-12) -> tuple[tf.Tensor, tf.Tensor]:
    """Estimates σ_max of `matrix [m, n]` from a left vector `u [m]`.

    Returns `(sigma, u_new)`; `sigma = u_newᵀ W v` with `v = Wᵀu/‖Wᵀu‖`, `u_new = Wv/‖Wv‖`.
    `u` is treated as a constant (no gradient flows through the iteration), as in the paper.
    """
    u = tf.stop_gradient(u)
    for _ in range(max(int(iterations), 1)):
        v = tf.math.l2_normalize(tf.linalg.matvec(matrix, u, transpose_a=True), epsilon=epsilon)
        u = tf.math.l2_normalize(tf.linalg.matvec(matrix, v), epsilon=epsilon)
    u, v = tf.stop_gradient(u), tf.stop_gradient(v)
    sigma = tf.tensordot(u, tf.linalg.matvec(matrix, v), 1)
    return sigma, u


def _initial_u(rows: int, seed: int | None) -> np.ndarray:
    u = np.random.default_rng(seed).normal(size=rows).astype(np.float32)
    return u / np.linalg.norm(u)


class SpectralNormConstraint(keras.constraints.Constraint, tf.Module):
    """Kernel constraint `W ← W / σ_max(W)` after each optimizer step (Miyato et al.'s
    normalization), with the power-iteration vector `u` persisted across steps. One instance
    per kernel. `mode="clip"` divides by `max(σ_max, 1)` instead: it only shrinks kernels whose
    σ exceeds 1 (a Lipschitz bound), leaving smaller ones as they are.

    `u` is a variable of the constraint, which is a `tf.Module`: the layer holding it as
    `kernel_constraint` tracks it, so `u` is saved in checkpoints and SavedModels and restored
    with them (a fresh `u` would need several steps to find the top singular vector again:
    one power iteration from a random start underestimates σ by ~10 %)."""

    MODES = ("strict", "clip")

    def __init__(self, iterations: int = 1, mode: str = "strict", seed: int | None = 0, *,
                 strict: bool | None = None):
        tf.Module.__init__(self, name="spectral_norm_constraint")
        if iterations < 1:
            raise ValueError(f"iterations must be ≥ 1, got {iterations}")
        if strict is not None:              # the older spelling
            mode = "strict" if strict else "clip"
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.iterations, self.mode, self.seed = int(iterations), mode, seed
        self.u: tf.Variable | None = None

    def __call__(self, kernel):
        matrix = _as_matrix(kernel)
        if self.u is None:
            with tf.init_scope():   # created once, outside any tf.function being traced
                self.u = tf.Variable(_initial_u(int(matrix.shape[0]), self.seed),
                                     trainable=False, name="spectral_norm_u")
        sigma, u = power_iteration(matrix, self.u, self.iterations)
        self.u.assign(u)
        scale = sigma if self.mode == "strict" else tf.maximum(sigma, 1.0)
        return kernel / scale

    def build(self, kernel: tf.Variable) -> None:
        """Creates `u` for `kernel` now (e.g. before restoring a checkpoint into it)."""
        if self.u is None:
            rows = int(np.prod(kernel.shape[:-1]))
            self.u = tf.Variable(_initial_u(rows, self.seed), trainable=False,
                                 name="spectral_norm_u")

    def get_config(self):
        return {"iterations": self.iterations, "mode": self.mode, "seed": self.seed}


class SpectralNormalization(keras.layers.Wrapper):
    """Wraps a layer with a `kernel` (Dense, Conv*) and uses `kernel / σ_max(kernel)` in its
    forward pass. `u` is updated (one step of `iterations` power iterations) only in training."""

    def __init__(self, layer: keras.layers.Layer, iterations: int = 1, **kwargs):
        if iterations < 1:
            raise ValueError(f"iterations must be ≥ 1, got {iterations}")
        super().__init__(layer, **kwargs)
        self.iterations = int(iterations)

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        if not hasattr(self.layer, "kernel"):
            raise ValueError(f"{type(self.layer).__name__} has no `kernel` to normalize")
        self.kernel = self.layer.kernel
        rows = int(np.prod(self.kernel.shape[:-1]))
        self.u = self.add_weight(name="u", shape=(rows,), trainable=False,
                                 initializer=keras.initializers.Constant(_initial_u(rows, 0)))
        super().build(input_shape)

    def call(self, inputs, training=None):
        sigma, u = power_iteration(_as_matrix(self.kernel), self.u, self.iterations)
        if training:
            self.u.assign(u)
        normalized = self.kernel / sigma
        # Swap the kernel for the call only; gradients reach the original variable.
        original = self.layer.kernel
        self.layer.kernel = normalized
        try:
            return self.layer(inputs)
        finally:
            self.layer.kernel = original

    def get_config(self):
        return {**super().get_config(), "iterations": self.iterations}


class PixelNorm(keras.layers.Layer):
    """`x / sqrt(mean(x², channel axis) + epsilon)`: per-pixel feature-vector normalization."""

    def __init__(self, epsilon: float = 1e-8, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.epsilon, self.axis = float(epsilon), int(axis)

    def call(self, inputs):
        return inputs * tf.math.rsqrt(
            tf.reduce_mean(tf.square(inputs), axis=self.axis, keepdims=True) + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "axis": self.axis}


class SpectrumFit(NamedTuple):
    matrix: np.ndarray          # the symmetric matrix found
    eigenvalues: np.ndarray     # its eigenvalues (ascending)
    loss: float                 # final mean squared eigenvalue error
    steps: int
    loss_history: np.ndarray    # loss before each step, [steps]
    eigenvalue_history: np.ndarray   # eigenvalues (ascending) before each step, [steps, n]


def _symmetric(parameters: tf.Tensor) -> tf.Tensor:
    return (parameters + tf.transpose(parameters)) / 2


def _spectrum_loss(parameters: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    eigenvalues = tf.linalg.eigvalsh(_symmetric(parameters))   # ascending
    return tf.reduce_mean(tf.square(eigenvalues - target))


def fit_spectrum(target_eigenvalues, *, method: str = "tape", learning_rate: float = .05,
                 tolerance: float = 1e-6, max_steps: int = 5000, seed: int = 0) -> SpectrumFit:
    """Finds a symmetric matrix with the given eigenvalues by Adam on the mean squared error
    between `eigvalsh((P + Pᵀ)/2)` and the sorted target (gradients through `tf.linalg.eigh`).

    method: "tape" (explicit GradientTape loop) or "minimize" (`optimizer.minimize`). Stops when
    the loss ≤ `tolerance` (squared eigenvalue units); raises if `max_steps` is not enough.
    """
    target = np.sort(np.asarray(target_eigenvalues, np.float64))
    if target.ndim != 1 or target.size < 1 or not np.isfinite(target).all():
        raise ValueError("target_eigenvalues must be a non-empty 1-D array of finite numbers")
    if method not in ("tape", "minimize"):
        raise ValueError(f"method must be 'tape' or 'minimize', got {method!r}")
    n = target.size
    target_t = tf.constant(target, tf.float64)
    rng = np.random.default_rng(seed)
    parameters = tf.Variable(rng.normal(size=(n, n)) / np.sqrt(n), dtype=tf.float64)
    optimizer = keras.optimizers.Adam(learning_rate)

    @tf.function
    def tape_step():
        eigenvalues = tf.linalg.eigvalsh(_symmetric(parameters))
        with tf.GradientTape() as tape:
            loss = _spectrum_loss(parameters, target_t)
        optimizer.apply_gradients([(tape.gradient(loss, parameters), parameters)])
        return loss, eigenvalues

    @tf.function
    def minimize_step():
        eigenvalues = tf.linalg.eigvalsh(_symmetric(parameters))
        loss = _spectrum_loss(parameters, target_t)
        optimizer.minimize(lambda: _spectrum_loss(parameters, target_t), [parameters])
        return loss, eigenvalues

    step = tape_step if method == "tape" else minimize_step
    losses, trajectory = [], []
    for i in range(1, max_steps + 1):
        loss, eigenvalues = step()
        losses.append(float(loss))
        trajectory.append(eigenvalues.numpy())
        if float(_spectrum_loss(parameters, target_t)) <= tolerance:
            break
    else:
        raise RuntimeError(f"fit_spectrum did not reach tolerance {tolerance} in {max_steps} "
                           f"steps (loss {losses[-1]:.3g}); raise max_steps or learning_rate")
    matrix = _symmetric(parameters).numpy()
    return SpectrumFit(matrix, np.linalg.eigvalsh(matrix), float(
        _spectrum_loss(parameters, target_t)), i, np.array(losses), np.array(trajectory))
