"""The one Trainer `run_fn` for every codec family (`Trainer(run_fn=
"components.trainer.run_fn")`).

`custom_config["family"]` names the family (codec.families); the other keys are its training
options (checked against its config class: an unknown key is an error). The family reads the
Trainer's example files, trains one λ and exports the SavedModel to the serving model dir; a
golden round trip coded by the in-process codec goes to `assets.extra/` for the ServingCheck.

Scale-out: the Trainer's process environment passes through to `run_fn` unchanged, so a
`TF_CONFIG` naming a cluster (set by Vertex AI for a CustomJob with several replicas, by the
Kubeflow TFJob operator, or by hand) makes the image families train under
MultiWorkerMirroredStrategy (`codec.models.bls2017_train.distribution_strategy`); every replica
runs `run_fn`, each trains on its rows of every global batch, and only the chief writes the
model and its golden files. README "Training on a cluster" shows the settings.
"""
from __future__ import annotations

from codec.families import get_family
from codec.train_loop import is_chief
from components.golden import write_golden


def run_fn(fn_args) -> None:
    """TFX generic-trainer entry point: train, export, record the golden round trip."""
    options = dict(fn_args.custom_config or {})
    family = get_family(options.pop("family", "mnist"))
    config = family.make_config(options, verbose=2)   # one line per epoch in the log
    codec = family.train_from_examples(config, fn_args.train_files, fn_args.eval_files,
                         fn_args.model_run_dir, fn_args.serving_model_dir)
    if not is_chief():   # other workers of a multi-worker Trainer: the chief exports
        return
    golden = family.golden(codec, fn_args.eval_files)
    write_golden(fn_args.serving_model_dir, *golden)
