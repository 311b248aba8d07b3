"""render: sample grids, reconstructions, interpolations, the latent space and loss curves into plots/images/."""

import torch

from aevae import config, data, model, run_stage
from aevae.evaluate import codes, reconstruct, sample
from aevae.files import atomic_path, read_csv
from aevae.render import (
    interpolate,
    latent_figure,
    losses_figure,
    manifold,
    manifold_figure,
    project_2d,
    rows_figure,
    samples_figure,
    save,
)

PAIRS = [(0, 6), (1, 7), (2, 5), (3, 8), (4, 9)]  # digits to walk between, first test image of each


def main():
    p = config.load()
    test_x, test_y = data.load("data/mnist", "test")
    ae, vae = model.load("models/ae.pt"), model.load("models/vae.pt")
    gen = torch.Generator().manual_seed(p.render.seed)
    torch.manual_seed(p.render.seed)  # the VAE's z samples in its reconstructions

    # Two of each digit, the first ones in the test set, so every class shows.
    picks = torch.cat([(test_y == d).nonzero()[:2, 0] for d in range(10)])
    originals = test_x[picks]
    first = {d: test_x[(test_y == d).nonzero()[0, 0]] for d in range(10)}
    walks = {}
    for a, b in PAIRS:
        walks |= {f"AE {a}→{b}": interpolate(ae, first[a], first[b], 12),
                  f"VAE {a}→{b}": interpolate(vae, first[a], first[b], 12)}
    ae_z, vae_z = codes(ae, test_x), codes(vae, test_x)
    axis = "z" if vae.z_dim == 2 else "PC"
    figures = {
        "samples.png": samples_figure({
            "AE: z ~ Gaussian fitted to test codes": sample(ae, 64, gen, fitted_to=ae_z),
            "VAE: z ~ N(0, I)": sample(vae, 64, gen),
        }),
        "reconstructions.png": rows_figure(
            {"original": originals, "AE": reconstruct(ae, originals), "VAE": reconstruct(vae, originals)},
            "Test images and their reconstructions",
        ),
        "interpolations.png": rows_figure(walks, "Decoded along straight lines between two test images' codes"),
        "latent.png": latent_figure(
            {"AE: codes": (project_2d(ae_z), test_y), "VAE: posterior means": (project_2d(vae_z), test_y)},
            "The test set in latent space" + ("" if axis == "z" else ": the first two principal components"),
            axis,
        ),
        "losses.png": losses_figure({"AE": read_csv("plots/ae/losses.csv"), "VAE": read_csv("plots/vae/losses.csv")}),
    }
    if vae.z_dim == 2:
        figures["manifold.png"] = manifold_figure(manifold(vae, 20), 20)
    else:
        print(f"render: manifold.png skipped: it needs model.z_dim = 2 (this VAE has {vae.z_dim})")
    with atomic_path("plots/images", directory=True) as tmp:
        for name, fig in figures.items():
            save(fig, tmp / name)


if __name__ == "__main__":
    run_stage(main)
