"""Test-set metrics for trained models: likelihoods, latent-space use, and sample quality as numbers.

Sample quality is measured the way the literature does on MNIST: in the feature space of a
classifier trained on MNIST (Inception features mean little on digits), by the Frechet distance
to the test set's features and by how confidently the classifier labels the samples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm import tqdm

from aevae.model import AE, IMAGE_DIM, VAE, Autoencoder, Classifier, recon_loss

# -log N(x; mu, I/2) - ||x - mu||^2: summed squared error is the NLL of a Gaussian of variance 1/2, up to this.
GAUSSIAN_NLL_CONSTANT = 0.5 * IMAGE_DIM * math.log(math.pi)


def recon_nll(logits: torch.Tensor, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """-log p(x|z) per image, in nats, as a normalised density: what ELBO and NLL bounds are made of."""
    nll = recon_loss(logits, x, likelihood)
    return nll + GAUSSIAN_NLL_CONSTANT if likelihood == "gaussian" else nll


@torch.no_grad()
def reconstruction_metrics(model: Autoencoder, x: torch.Tensor, batch_size: int = 2000) -> dict[str, float]:
    """Per-image means over x: squared error and cross-entropy of the reconstruction (both summed over
    pixels, whatever the model was trained with), the model's own training loss, and for a VAE the KL
    term and the negative ELBO under its likelihood (named with it: never compare across likelihoods).

    A VAE reconstructs from one sampled z per image, so these are one-sample estimates.
    """
    model.eval()
    sums = torch.zeros(5)
    for xb in x.split(batch_size):
        logits, kl = model(xb)
        mse, bce = recon_loss(logits, xb, "gaussian"), recon_loss(logits, xb, "bernoulli")
        own = mse if model.likelihood == "gaussian" else bce
        nelbo = recon_nll(logits, xb, model.likelihood) + kl
        sums += torch.stack([mse.sum(), bce.sum(), (own + model.beta * kl).sum(), kl.sum(), nelbo.sum()])
    mse, bce, loss, kl, nelbo = (sums / len(x)).tolist()
    out = {"mse": mse, "bce": bce, "loss": loss}
    if isinstance(model, VAE):
        out |= {"kl": kl, f"nelbo_{model.likelihood}": nelbo}
    return out


@torch.no_grad()
def importance_nll(vae: VAE, x: torch.Tensor, k: int, batch_size: int = 50, chunk: int = 500) -> float:
    """-log p(x) per image, estimated with k importance samples from q(z|x) (Burda et al. 2015):
    log p(x) ~ log mean_k p(x|z_k) p(z_k) / q(z_k|x). An upper bound on the NLL that tightens as k grows;
    k = 1 is the negative ELBO."""
    vae.eval()
    total = 0.0
    log2pi = math.log(2 * math.pi)
    for xb in tqdm(x.split(batch_size), desc=f"IS-NLL, k={k}", unit="batch", leave=False):
        mu, logvar = vae.encode(xb)
        std = (0.5 * logvar).exp()
        log_w = []
        for n in [min(chunk, k - i) for i in range(0, k, chunk)]:  # bounded memory: chunk x batch images
            eps = torch.randn(n, *mu.shape)
            z = mu + eps * std
            log_p_x_z = -recon_nll(vae.decoder(z), xb.expand(n, *xb.shape), vae.likelihood)
            log_p_z = -0.5 * (z.pow(2) + log2pi).sum(-1)
            log_q_z = -0.5 * (eps.pow(2) + log2pi + logvar).sum(-1)
            log_w.append(log_p_x_z + log_p_z - log_q_z)
        total -= (torch.logsumexp(torch.cat(log_w), 0) - math.log(k)).sum().item()
    return total / len(x)


def active_units(codes: torch.Tensor, threshold: float = 0.01) -> int:
    """Latent dims whose code (a VAE: E_q[z_d]) varies across the data: Cov_x > threshold (Burda et al.)."""
    return int((codes.var(0) > threshold).sum())


def linear_probe(train_z, train_y, test_z, test_y, steps: int = 200) -> float:
    """Test accuracy of a multinomial logistic regression fitted on standardised training codes."""
    mean, std = train_z.mean(0), train_z.std(0) + 1e-6
    train_z, test_z = (train_z - mean) / std, (test_z - mean) / std
    w = torch.zeros(train_z.shape[1], 10, requires_grad=True)
    b = torch.zeros(10, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(train_z @ w + b, train_y) + 1e-4 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return ((test_z @ w + b).argmax(1) == test_y).float().mean().item()


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) between Gaussians fitted to two feature sets."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T), torch.cov(b.T)
    # Tr (S_a S_b)^1/2 = Tr (S_a^1/2 S_b S_a^1/2)^1/2, whose matrix is symmetric: eigenvalues, no sqrtm.
    vals, vecs = torch.linalg.eigh(s_a)
    root_a = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp(min=0).sqrt().sum()
    return ((mu_a - mu_b).pow(2).sum() + s_a.trace() + s_b.trace() - 2 * cross).item()


@torch.no_grad()
def classify(classifier: Classifier, x: torch.Tensor, batch_size: int = 1000):
    """The classifier's penultimate features and class probabilities for images x."""
    classifier.eval()
    feats = torch.cat([classifier.features(xb) for xb in x.split(batch_size)])
    return feats, classifier.head(feats).softmax(1)


@torch.no_grad()
def codes(model: Autoencoder, x: torch.Tensor, batch_size: int = 5000) -> torch.Tensor:
    """The AE's codes, or the VAE's posterior means."""
    model.eval()
    z = [model.encode(xb) for xb in x.split(batch_size)]
    return torch.cat([zb[0] if isinstance(model, VAE) else zb for zb in z])


@torch.no_grad()
def reconstruct(model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    """Decoded images; a VAE decodes one z sampled from q(z|x), as in its loss."""
    model.eval()
    return model(x)[0].sigmoid()


@torch.no_grad()
def sample(model: Autoencoder, n: int, generator: torch.Generator, fitted_to: torch.Tensor | None = None):
    """Decode n latent draws: from N(0, I), or from a Gaussian per latent dim fitted to `fitted_to` codes.

    The fitted Gaussian is how the article samples an AE, whose codes follow no distribution of their own.
    """
    model.eval()
    eps = torch.randn(n, model.z_dim, generator=generator)
    if fitted_to is not None:
        eps = fitted_to.mean(0) + fitted_to.std(0) * eps
    return model.decode(eps)


def model_metrics(model: Autoencoder, classifier: Classifier, reference: torch.Tensor, inputs, cfg) -> dict:
    """Everything evaluate reports for one autoencoder.

    inputs: (train_x, train_y, test_x, test_y) as the model saw them in training (binarised or not);
    reference: the classifier's features of the grey test images.
    """
    train_x, train_y, test_x, test_y = inputs
    gen = torch.Generator().manual_seed(cfg.seed)
    out = reconstruction_metrics(model, test_x)
    if isinstance(model, VAE):
        out[f"nll_is_{model.likelihood}"] = importance_nll(model, test_x, cfg.iw_samples)
    test_z = codes(model, test_x)
    out["active_units"] = active_units(test_z)
    out["probe_accuracy"] = linear_probe(codes(model, train_x), train_y, test_z, test_y)
    fitted = test_z if isinstance(model, AE) else None
    feats, probs = classify(classifier, sample(model, cfg.samples, gen, fitted_to=fitted))
    out["frechet_samples"] = frechet_distance(feats, reference)
    out["confident_samples"] = (probs.max(1).values > 0.9).float().mean().item()
    feats, probs = classify(classifier, reconstruct(model, test_x))
    out["frechet_reconstructions"] = frechet_distance(feats, reference)
    out["classifier_accuracy_reconstructions"] = (probs.argmax(1) == test_y).float().mean().item()
    return out
