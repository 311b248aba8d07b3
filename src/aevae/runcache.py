"""`python -m aevae.runcache push [-r REMOTE]`: DVC's run-cache onto a DVC remote, with the outputs its
records name, so that another machine restores a stage instead of running it again.

`dvc push --run-cache` sends the run records alone (its maintainers: it pushes nothing "except the runs
files", treeverse/dvc#10472), and DVC never pushes an output marked `cache: false`: here the DVCLive
logs, metrics and images that git keeps. A record whose outputs are not on the remote restores nothing
elsewhere, so every stage with such an output would run again. This pushes the records, then every
output they name, through DVC's own API. On the other machine, `dvc pull --run-cache` and then
`dvc exp run --pull` (or `dvc repro --pull`) restore the stages.
"""

from __future__ import annotations

import argparse
import os
import sys


def push(root: str = ".", remote: str | None = None) -> int:
    """Push the run-cache of the repository at `root` and the outputs its records name; the objects sent."""
    from dvc.repo import Repo

    with Repo(root) as repo:
        repo.stage_cache.push(remote)
        runs = repo.stage_cache.cache_dir
        records = [(key, value) for prefix in _ls(runs) for key in _ls(os.path.join(runs, prefix))
                   for value in _ls(os.path.join(runs, prefix, key))]
        sent = 0
        for odb, objs in repo.stage_cache.get_used_objs(records).items():
            sent += len(repo.cloud.push(objs, remote=remote, odb=odb).transferred)
    return sent


def _ls(folder: str) -> list[str]:
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m aevae.runcache", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["push"])
    p.add_argument("-r", "--remote", help="the DVC remote (default: the repository's default remote)")
    args = p.parse_args(argv)
    print(f"{push('.', args.remote)} outputs of the run-cache pushed, with its records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
