"""Training and checkpoints: the loop (`loop`), what each model learns (`tasks`, `classifiers`, `toy`),
safetensors checkpoints (`checkpoint`) and the shipped models by name (`pretrained`)."""
