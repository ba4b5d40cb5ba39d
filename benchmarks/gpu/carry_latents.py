"""Carry a latent model's training set to a machine that has no data (the device machine of benchmarks/gpu/run.sh).

Writes .carry/<dataset>.safetensors: z_0 for every training image (`training.tasks.encode_latents`, rounded to
float16 to fit the device tool's 64 MiB transfer; |z_0| <= ~4, so the rounding error is < 2e-3, far below the
noise the model learns to remove) with the captions and the cache key that `training.tasks._cached_latents` checks.
`train_on_deadline.py` turns it back into the run folder's float32 latent cache, so `python -m minidiff train`
there skips the images it does not have. Run here, where the data is:

    python benchmarks/gpu/carry_latents.py --dataset cifar10 --autoencoder data/cifar10_ae
    python benchmarks/gpu/carry_latents.py --dataset celeba --autoencoder data/celeba_ae
"""

import argparse
import json
from pathlib import Path

from safetensors.torch import save_file

from minidiff.training.loop import TrainConfig
from minidiff.training.tasks import encode_latents, load_autoencoder, training_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--autoencoder", required=True)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default=".carry")
    a = ap.parse_args()
    images, captions = training_data(TrainConfig(dataset=a.dataset, data_root=a.data_root, image_size=32))
    ae = load_autoencoder(a.autoencoder)
    z = encode_latents(ae, images)  # (N, C, h, w) float32
    meta = {"captions": json.dumps(captions), "key": f"{ae.sha256}:{len(images)}",
            "shape": json.dumps(list(images.shape))}
    Path(a.out).mkdir(exist_ok=True)
    save_file({"z0": z.half()}, str(Path(a.out) / f"{a.dataset}.safetensors"), metadata=meta)
    err = (z.half().float() - z).abs().max()
    print(a.dataset, tuple(z.shape), f"max |z| {z.abs().max():.2f}, float16 error {err:.1e}")


if __name__ == "__main__":
    main()
