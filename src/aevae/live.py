"""Per-epoch logging with DVCLive, the DVC ecosystem's logger: `dvc exp show`, `dvc plots` and DVC's
VS Code extension see a training stage's figures while it runs, not only once it has finished.

A stage logs into a folder of its own, which dvc.yaml declares: DVCLive's summary
`<folder>/metrics.json` (the latest epoch, with `step`, the epoch's number) and a curve per figure,
`<folder>/plots/metrics/<split>/<term>.tsv` (columns `step` and the term). No timestamps: the same
params give the same bytes.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator
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


def log_epoch(live: Live, epoch: int, figures: dict[str, dict[str, float]]) -> None:
    """One epoch's figures, {split: {term: value}}, as `<split>/<term>` at step `epoch`."""
    live.step = epoch
    for split, terms in figures.items():
        for term, value in terms.items():
            live.log_metric(f"{split}/{term}", value)
    live.next_step()


def log_epochs(log: Log, epochs: Iterable) -> tuple[dict[str, dict[str, float]], float]:
    """Log each epoch that aevae.train.fit yields; the last one's figures, and the total wall time of
    the training passes (which goes in no log: it differs between runs)."""
    seconds = 0.0
    for epoch in epochs:
        log_epoch(log.start(), epoch.number, epoch.figures)
        seconds += epoch.seconds
    return epoch.figures, seconds
