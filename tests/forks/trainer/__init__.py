"""A small tabular classifier trainer, laid out the way real projects lay one out (config, data, model, engine)."""
