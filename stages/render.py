"""render: sample grids, reconstructions and loss curves into plots/images/."""

import torch

from aevae import config, data, model, run_stage
from aevae.evaluate import codes, reconstruct, sample
from aevae.files import atomic_path, read_csv
from aevae.render import losses_figure, reconstructions_figure, samples_figure, save


def main():
    p = config.load()
    test_x, test_y = data.load("data/mnist", "test")
    ae, vae = model.load("models/ae.pt"), model.load("models/vae.pt")
    gen = torch.Generator().manual_seed(p.render.seed)
    torch.manual_seed(p.render.seed)  # the VAE's z samples in its reconstructions

    # Two of each digit, the first ones in the test set, so every class shows.
    picks = torch.cat([(test_y == d).nonzero()[:2, 0] for d in range(10)])
    originals = test_x[picks]
    recons = {"original": originals, "AE": reconstruct(ae, originals), "VAE": reconstruct(vae, originals)}
    figures = {
        "samples.png": samples_figure({
            "AE: z ~ Gaussian fitted to test codes": sample(ae, 64, gen, fitted_to=codes(ae, test_x)),
            "VAE: z ~ N(0, I)": sample(vae, 64, gen),
        }),
        "reconstructions.png": reconstructions_figure(recons),
        "losses.png": losses_figure({"AE": read_csv("plots/ae/losses.csv"), "VAE": read_csv("plots/vae/losses.csv")}),
    }
    with atomic_path("plots/images", directory=True) as tmp:
        for name, fig in figures.items():
            save(fig, tmp / name)


if __name__ == "__main__":
    run_stage(main)
