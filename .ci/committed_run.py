"""CI's two checks that the committed run is HEAD's (docs/reproducibility.md):

    python .ci/committed_run.py lock       # before anything runs: no stage's code, params or data differ from dvc.lock
    python .ci/committed_run.py outputs    # after a full default `dvc repro`: every output has its committed md5

Wall times (metrics/*/time.json, evaluate_time.json) are the only outputs allowed to differ.
"""

import subprocess
import sys

import yaml
from dvc.repo import Repo


def wall_time(path: str) -> bool:
    return path.endswith("time.json")


def lock_is_heads() -> list[str]:
    """What `dvc status` finds changed in each stage's command, code, params or data. A dep that is
    another stage's output and is not there yet (data/mnist and the models, in a fresh clone) is no change."""
    repo = Repo()
    outputs = {str(out) for stage in repo.index.stages for out in stage.outs}
    found = []
    for stage, changes in repo.status().items():
        for change in changes:
            if change == "changed command" or not isinstance(change, dict):
                found.append(f"{stage}: {change}")
                continue
            for path, state in change.get("changed deps", {}).items():
                if not (state == "deleted" and path in outputs):
                    found.append(f"{stage}: {path} {state}")
    return found


def outputs_differ() -> list[str]:
    """Every output whose md5 in dvc.lock differs from HEAD's, with the changed files under it that git tracks."""
    def md5s(text: str) -> dict[str, str]:
        return {out["path"]: out["md5"] for stage in yaml.safe_load(text)["stages"].values() for out in stage["outs"]}

    committed = md5s(subprocess.run(["git", "show", "HEAD:dvc.lock"], capture_output=True, text=True,
                                    check=True).stdout)
    now = md5s(open("dvc.lock").read())
    found = []
    for path in sorted(committed.keys() | now.keys()):
        if committed.get(path) != now.get(path) and not wall_time(path):
            changed = subprocess.run(["git", "status", "--porcelain", "--", path], capture_output=True, text=True,
                                     check=True).stdout.split("\n")
            files = [line[3:] for line in changed if line and not wall_time(line)]
            found.append(f"{path}: md5 {committed.get(path)} committed, {now.get(path)} now"
                         + (f" ({', '.join(files)})" if files and files != [path] else ""))
    return found


if __name__ == "__main__":
    check = sys.argv[1] if len(sys.argv) == 2 else ""
    if check not in ("lock", "outputs"):
        sys.exit(f"usage: python {sys.argv[0]} lock|outputs")
    found = lock_is_heads() if check == "lock" else outputs_differ()
    if found:
        what = ("dvc.lock is not HEAD's: these changed after the committed run; run the full default `dvc repro` "
                "and commit dvc.lock, metrics/ and plots/" if check == "lock" else
                "the full default `dvc repro` did not give the committed outputs")
        sys.exit(f"error: {what}:\n  " + "\n  ".join(found))
    print("the committed run is HEAD's" if check == "lock" else "every output is the committed bytes")
