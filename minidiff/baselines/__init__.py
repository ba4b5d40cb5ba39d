"""The course project's baselines (lecture 9), one short file each, on the library's hooks.

- `direct_inversion`: Direct Inversion (Ju et al., "PnP Inversion", ICLR 2024): DDIM inversion + P2P with the
  source branch put back on the inversion trajectory after every step, no optimisation.
- `blended`: Blended (Latent) Diffusion (Avrahami et al., CVPR 2022 / SIGGRAPH 2023): denoise with the target
  prompt inside a mask, paste the forward-noised source outside it at every step.
- `masactrl`: MasaCtrl (Cao et al., ICCV 2023): mutual self-attention control, the target's queries read the
  source's keys and values (non-rigid edits).

All are plain functions over a model with the `DiffusionModel` interface (`encode_text`, `schedule`, an
eps-model call, `unet` for the attention hook); `bench.edit` scores them on exact targets.
"""
