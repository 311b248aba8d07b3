"""render: sample grids, reconstructions, interpolations, the latent space and loss curves of every
autoencoder (aevae.model.KINDS) into plots/images/, side by side."""

import aevae  # first: it answers MKL's CPU check before torch loads MKL (aevae.runtime)

# isort: split
import torch

from aevae import atomic_path, config, data, model, run_command, runtime
from aevae.figures import (
    interpolate,
    latent_figure,
    losses_figure,
    manifold,
    manifold_figure,
    project_2d,
    read_curves,
    rows_figure,
    samples_figure,
    save,
)

PAIRS = [(0, 6), (1, 7), (2, 5), (3, 8), (4, 9)]  # digits to walk between, first test image of each


def main():
    p = config.load()
    runtime.setup()
    device = runtime.resolve_device(p.render.device, "render.device")
    torch.set_grad_enabled(False)
    test_x, test_y = data.load("data/mnist", "test")
    test_x = data.eval_images(test_x, p.data.binarize, "test").to(device)  # As the models saw them in training.
    test_y = test_y.to(device)
    models = {kind.upper(): model.load(f"models/{kind}.pt", device) for kind in model.KINDS}
    gen = torch.Generator(device).manual_seed(p.render.seed)
    torch.manual_seed(p.render.seed)  # a VAE's z samples in its reconstructions

    # Two of each digit, the first ones in the test set, so every class shows.
    picks = torch.cat([(test_y == d).nonzero()[:2, 0] for d in range(10)])
    originals = test_x[picks]
    first = {d: test_x[(test_y == d).nonzero()[0, 0]] for d in range(10)}
    walks = {f"{name} {a}→{b}": interpolate(net, first[a], first[b], 12) for a, b in PAIRS for name, net in models.items()}
    codes = {name: net.code(test_x) for name, net in models.items()}
    z_dim = next(iter(models.values())).layers.z_dim  # the same for every model (params.yaml: model.z_dim)
    axis = "z" if z_dim == 2 else "PC"
    figures = {
        "samples.png": samples_figure(
            {f"{name}: {net.prior_name}": net.sample(64, gen) for name, net in models.items()}
        ),
        "reconstructions.png": rows_figure(
            {"original": originals} | {name: net.reconstruct(originals) for name, net in models.items()},
            "Test images and their reconstructions",
        ),
        "interpolations.png": rows_figure(
            walks, "Decoded along straight lines between two test images' codes\n(each row ends at the model's "
            "decoding of the two codes, which for a VAE can blur into another digit)"
        ),
        "latent.png": latent_figure(
            {f"{name}: {net.code_name}": (project_2d(codes[name]), test_y) for name, net in models.items()},
            "The test set in latent space" + ("" if axis == "z" else ": the first two principal components"),
            axis,
        ),
        "losses.png": losses_figure({name: read_curves(f"metrics/{name.lower()}/train") for name in models}),
    }
    for name, net in models.items():
        if net.density and z_dim == 2:  # a grid through the N(0, I) prior
            figures["manifold.png"] = manifold_figure(manifold(net, 20), 20, name)
    if z_dim != 2:
        print(f"render: manifold.png skipped: it needs model.z_dim = 2 (here {z_dim})")
    with atomic_path("plots/images", directory=True) as tmp:
        for name, fig in figures.items():
            save(fig, tmp / name)


if __name__ == "__main__":
    run_command(main)
