"""Per-epoch logging with DVCLive, the DVC ecosystem's logger: `dvc exp show`, `dvc plots` and DVC's
VS Code extension see a training stage's figures while it runs, not only once it has finished.

A stage logs into a folder of its own, which dvc.yaml declares: DVCLive's summary
`<folder>/metrics.json` (the latest epoch, with `step`, the epoch's number) and a curve per figure,
`<folder>/plots/metrics/<split>/<term>.tsv` (columns `step` and the term), which `read_curves` reads
back. No timestamps: the same params give the same bytes.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dvclive import Live


class Log:
    """A stage's DVCLive log, begun at its first epoch (`start`): DVCLive empties the folder when it
    begins, and until an epoch has finished the previous run's log is all there is."""

    def __init__(self, folder: Path):
        self.folder, self.live = folder, None

    def start(self) -> Live:
        if self.live is None:
            self.live = Live(str(self.folder), save_dvc_exp=False, dvcyaml=None)
        return self.live

    def epoch(self, epoch, extra: dict[str, float] | None = None) -> None:
        """One epoch's means (an aevae.train.Epoch's, {split: {term: value}}), as `<split>/<term>` at step
        `epoch.number`: what the trainer's `on_epoch` is given; and `extra`'s figures, as `<name>`."""
        live = self.start()
        live.step = epoch.number
        for split, terms in epoch.means.items():
            for term, value in terms.items():
                live.log_metric(f"{split}/{term}", value)
        for name, value in (extra or {}).items():
            live.log_metric(name, value)
        live.next_step()

    def summary(self, name: str, value: float) -> None:
        """A figure of the finished run, in the summary (metrics.json) alone, not as a curve."""
        self.start().log_metric(name, value, plot=False)


@contextmanager
def logger(folder: str | Path) -> Iterator[Log]:
    """A DVCLive log writing into `folder` from its first epoch on (`Log.start`).

    DVC runs the stage, so DVCLive writes no dvc.yaml and saves no experiment of its own. If the
    block raises (divergence, Ctrl-C), `folder` is put back as it was: a mistake loses no earlier
    results, even ones that git does not hold yet. A process killed outright before its first epoch
    has ended leaves the previous log; killed later, the new run's partial log, which a resumed run
    writes anew from its checkpoint (aevae.train).
    """
    folder = Path(folder)
    with tempfile.TemporaryDirectory() as keep:
        old = Path(keep) / "old"
        if folder.exists():
            shutil.copytree(folder, old)
        log = Log(folder)
        try:
            yield log
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            if old.exists():
                shutil.copytree(old, folder)
            raise
        log.start().end()


def read_curves(folder: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """The per-epoch curves a training stage logged into `folder`, as {"<split>/<term>": (steps, values)},
    e.g. "test/loss"."""
    curves = {}
    for path in sorted(Path(folder, "plots/metrics").glob("*/*.tsv")):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        steps, values = [int(r["step"]) for r in rows], [float(r[path.stem]) for r in rows]
        curves[f"{path.parent.name}/{path.stem}"] = (steps, values)
    return curves
