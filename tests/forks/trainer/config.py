"""Training settings. Edit the dict (forks do): there is no command-line option for any of these."""

CONFIG = {
    "seed": 0,
    # optimisation
    "lr": 3e-3,
    "weight_decay": 0.01,
    "betas": (0.9, 0.999),
    "grad_clip": 1.0,
    "warmup_steps": 3,
    "epochs": 3,
    "max_steps": None,  # train for exactly this many updates instead of `epochs` (the harness sets --steps)
    # data
    "batch_size": 32,
    "eval_batch_size": 128,
    "num_workers": 0,
    "val_fraction": 0.2,
    "aug_noise": 0.05,
    "aug_mask_prob": 0.1,
    # model
    "hidden": 48,
    "dropout": 0.1,
    "refine_steps": 2,
    # infrastructure
    "output_dir": "outputs/tabular",
    "compile_backend": None,  # e.g. "aot_eager" to wrap the model in torch.compile
}
