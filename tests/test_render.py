import torch

from aevae import model, render


def test_the_manifold_grid_is_the_gaussians_quantiles_and_its_figure_names_them(tmp_path):
    z = render.manifold_grid(20)
    assert z.shape == (20,) and torch.all(z[1:] > z[:-1]) and torch.allclose(z, -z.flip(0), atol=1e-6)
    u = torch.distributions.Normal(0.0, 1.0).cdf(z)
    assert torch.allclose(u, torch.linspace(0, 1, 22)[1:-1], atol=1e-6)

    torch.manual_seed(0)
    images = render.manifold(model.VAE([16], 2), 20)
    assert images.shape == (400, 784)
    fig = render.manifold_figure(images, 20, "VAE")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{z[i]:.2f}" for i in range(0, 20, 4)]
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{z.flip(0)[i]:.2f}" for i in range(0, 20, 4)]
    render.save(fig, tmp_path / "manifold.png")
    assert (tmp_path / "manifold.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
