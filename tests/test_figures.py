"""Each figure holds what its caption says: its panels or rows, their titles, and the values on the axes
that carry data."""

import numpy as np
import pytest
import torch

from aevae import figures

from helpers import make_model


def shown(ax) -> np.ndarray:
    """The image an axes shows, as an array."""
    return np.asarray(ax.images[0].get_array())


def test_a_grid_tiles_28_pixel_images_with_2_pixels_of_separator():
    images = torch.rand(10, 784)
    g = figures.grid(images, nrow=4)
    assert g.shape == (2 + 3 * 30, 2 + 4 * 30)  # 3 rows of 4 (the last one short), a 2-pixel border each
    assert torch.equal(g[2:30, 2:30], images[0].view(28, 28)) and torch.equal(g[32:60, 62:90], images[6].view(28, 28))
    assert (g[:2] == 0.5).all() and (g[-30:, 2 + 2 * 30:] == 0.5).all()  # separators, and the short row's gaps


def test_the_samples_figure_has_a_titled_panel_of_64_per_model():
    panels = {"AE: z ~ diagonal Gaussian": torch.zeros(64, 784), "VAE: z ~ N(0, I)": torch.ones(64, 784)}
    fig = figures.samples_figure(panels)
    assert [ax.get_title() for ax in fig.axes] == list(panels)
    for ax, images in zip(fig.axes, panels.values()):
        assert shown(ax).shape == (2 + 8 * 30,) * 2 and shown(ax)[2:30, 2:30].mean() == images[0].mean()


def test_the_rows_figure_has_a_named_row_per_entry_in_order():
    rows = {"original": torch.rand(20, 784), "AE": torch.rand(20, 784), "VAE": torch.rand(20, 784)}
    fig = figures.rows_figure(rows, "Test images and their reconstructions")
    assert fig.get_suptitle() == "Test images and their reconstructions"
    assert [ax.get_ylabel() for ax in fig.axes] == list(rows)
    for ax, images in zip(fig.axes, rows.values()):
        assert shown(ax).shape == (30 + 2, 2 + 20 * 30)  # one row of all 20
        assert np.allclose(shown(ax)[2:30, 2 + 19 * 30:30 + 19 * 30], images[19].view(28, 28).numpy())


def test_the_latent_figure_scatters_every_point_coloured_by_its_digit():
    torch.manual_seed(0)
    labels = torch.arange(300) % 10
    panels = {"AE: codes": (torch.randn(300, 2), labels), "VAE: posterior means": (torch.randn(300, 2), labels)}
    fig = figures.latent_figure(panels, "The test set in latent space: the first two principal components", "PC")
    scatters = fig.axes[:2]
    assert [ax.get_title() for ax in scatters] == list(panels)
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in scatters] == [("PC 1", "PC 2")] * 2
    for ax, (points, digits) in zip(scatters, panels.values()):
        collection = ax.collections[0]
        assert np.allclose(collection.get_offsets(), points.numpy()) and np.array_equal(collection.get_array(), digits)
    colorbar = fig.axes[2]
    assert colorbar.get_ylabel() == "digit" and list(colorbar.get_yticks()) == list(range(10))


def test_project_2d_keeps_2d_codes_and_otherwise_finds_the_widest_directions():
    torch.manual_seed(0)
    z = torch.randn(500, 2)
    assert torch.equal(figures.project_2d(z), z)
    wide = torch.randn(2000, 5) * torch.tensor([0.1, 5.0, 0.1, 3.0, 0.1])
    pcs = figures.project_2d(wide)
    assert pcs.shape == (2000, 2)
    assert pcs[:, 0].std() == pytest.approx(5.0, rel=0.05) and pcs[:, 1].std() == pytest.approx(3.0, rel=0.05)


def curves(loss, recon, kl):
    """read_curves' shape for one model, over epochs 1..n: train and test values of each term."""
    epochs = list(range(1, len(loss) + 1))
    return {f"{split}/{term}": (epochs, [v + (0.5 if split == "test" else 0) for v in values])
            for split in ("train", "test") for term, values in (("loss", loss), ("recon", recon), ("kl", kl))}


def test_the_losses_figure_draws_each_models_train_and_test_curves_and_no_kl_for_the_ae():
    models = {"AE": curves([30, 20, 15], [30, 20, 15], [0, 0, 0]), "VAE": curves([40, 33, 31], [25, 18, 16], [15, 15, 15])}
    fig = figures.losses_figure(models)
    assert [ax.get_title() for ax in fig.axes] == ["Objective per image", "Reconstruction term per image",
                                                    "KL term per image"]
    for ax, term in zip(fig.axes, ("loss", "recon", "kl")):
        names = ["VAE"] if term == "kl" else ["AE", "VAE"]
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == [f"{n} {split}" for n in names for split in ("train", "test")]
        for line, (name, split) in zip(lines, [(n, s) for n in names for s in ("train", "test")]):
            assert (list(line.get_xdata()), list(line.get_ydata())) == (
                models[name][f"{split}/{term}"][0], models[name][f"{split}/{term}"][1])
        assert ax.get_xlabel() == "epoch" and all(float(t).is_integer() for t in ax.get_xticks())


def test_the_losses_figure_draws_every_model_however_many_each_in_its_own_colour():
    models = {name: curves([40 - i, 30 - i], [30 - i, 20 - i], [10, 10]) for i, name in enumerate(["AE", "VAE", "Linear"])}
    fig = figures.losses_figure(models)
    for ax in fig.axes:
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == [f"{n} {s}" for n in models for s in ("train", "test")]
        colours = [line.get_color() for line in lines]
        assert colours[::2] == colours[1::2] and len(set(colours)) == 3  # train and test alike, models apart
        assert [text.get_text() for text in ax.get_legend().get_texts()] == [line.get_label() for line in lines]


def test_the_manifold_grid_is_the_gaussians_quantiles_and_its_figure_names_them(tmp_path):
    z = figures.manifold_grid(20)
    assert z.shape == (20,) and torch.all(z[1:] > z[:-1]) and torch.allclose(z, -z.flip(0), atol=1e-6)
    u = torch.distributions.Normal(0.0, 1.0).cdf(z)
    assert torch.allclose(u, torch.linspace(0, 1, 22)[1:-1], atol=1e-6)

    torch.manual_seed(0)
    vae = make_model("vae", hidden_dims=(16,), z_dim=2)
    images = figures.manifold(vae, 20)
    assert images.shape == (400, 784)
    # row-major from the top left: z1 grows along a row, z2 falls down the rows
    assert torch.allclose(images[0], vae.decode(torch.stack([z[0], z[-1]])[None])[0], atol=1e-6)
    assert torch.allclose(images[20 * 19 + 19], vae.decode(torch.stack([z[-1], z[0]])[None])[0], atol=1e-6)
    fig = figures.manifold_figure(images, 20, "VAE")
    ax = fig.axes[0]
    assert shown(ax).shape == (2 + 20 * 30,) * 2
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{z[i]:.2f}" for i in range(0, 20, 4)]
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{z.flip(0)[i]:.2f}" for i in range(0, 20, 4)]
    figures.save(fig, tmp_path / "manifold.png")
    assert (tmp_path / "manifold.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_interpolation_runs_from_one_code_to_the_other():
    torch.manual_seed(0)
    ae = make_model("ae", hidden_dims=(16,), z_dim=3)
    a, b = torch.rand(784), torch.rand(784)
    walk = figures.interpolate(ae, a, b, 5)
    za, zb = ae.code(torch.stack([a, b]))
    assert walk.shape == (5, 784)
    assert torch.allclose(walk[0], ae.decode(za[None])[0]) and torch.allclose(walk[-1], ae.decode(zb[None])[0])
    assert torch.allclose(walk[2], ae.decode(((za + zb) / 2)[None])[0], atol=1e-6)
