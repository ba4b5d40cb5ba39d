"""Every `torch.nn.Module` of the project: layers, attention (the ONE controller hook), the UNet, the KL autoencoder,
the text encoder and tokenizer, the classifiers, the 2-D toy MLP, and `DiffusionModel`, which ties a UNet, a text
encoder and a schedule into one eps-model (`generate` samples it)."""
