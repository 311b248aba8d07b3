"""One sweep, one command, on a Ray cluster: `python -m aevae.sweep -S 'vae.beta=2,4'`.

DVC's queue never leaves one machine (a Celery app on a local broker). Here each experiment is one Ray
task, on any node, that does what a person on that node would: clone the git remote at this commit,
pull the baseline's outputs and DVC's run-cache, `dvc exp run -n <name>`, and push the experiment and
the run-cache back. Ray places the tasks and retries one whose worker or node dies; DVC computes, skips
what its run-cache holds, and stores. So every result is an ordinary DVC experiment, and a retry
replaces its own ref, named from its params, instead of adding a second.

Without --address the cluster is this machine. Its clones share this repository's DVC cache, and so its
run-cache, and push their experiments into this repository: there is no remote to set up.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from aevae import UserError

RETRIES = 3


def sweeps(set_params: list[str]) -> list[list[str]]:
    """Each experiment's `-S` overrides, in DVC's own sweep grammar (`key=a,b`, `key=range(a,b)`, the
    product over keys), parsed by DVC's own parser so that a sweep means what `dvc exp run --queue` does."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import get_hydra_sweeps

    from hydra.errors import OverrideParseException

    try:
        points = get_hydra_sweeps(to_path_overrides(set_params))
    except (InvalidArgumentError, OverrideParseException) as e:
        first = str(e).splitlines()[0]
        raise UserError(f"{first}: expected -S key=value, key=a,b or key=range(a,b), as dvc exp run --queue takes") from None
    return [[o for overrides in point.values() for o in overrides] for point in points]


def name(overrides: list[str]) -> str:
    """The experiment's name, from its params alone, so that a rerun or a retry finds its own ref:
    `vae.beta=2 train.seed=0` -> `vae.beta-2_train.seed-0`."""
    parts = []
    for override in overrides:
        key, _, value = override.partition("=")
        parts.append(f"{key}-{re.sub(r'[^A-Za-z0-9._-]+', '-', value).strip('-')}")
    return "_".join(parts) or "baseline"


def git(cwd, *args) -> str:
    run = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if run.returncode:
        raise UserError(f"git {' '.join(args)}: {run.stderr.strip().splitlines()[-1]}")
    return run.stdout.strip()


def existing(git_url: str, baseline: str) -> set[str]:
    """The experiments of `baseline` that the git remote already holds (DVC's refs/exps/ab/cdef…/<name>)."""
    refs = git(".", "ls-remote", git_url, f"refs/exps/{baseline[:2]}/{baseline[2:]}/*")
    return {line.rsplit("/", 1)[1] for line in refs.splitlines()}


def run_experiment(git_url: str, baseline: str, exp: str, overrides: list[str], threads: int,
                   shared_cache: str | None, events) -> dict:
    """One experiment in a fresh clone on this node: what it ran and took from the run-cache, or its error."""
    import ray

    started = time.time()
    # Not waited for: a task that waits on Ray lends its CPU to the next one, which would then run beside it.
    events.put.remote((exp, ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address()))
    work = tempfile.mkdtemp(prefix=f"aevae-sweep-{exp}-")
    env = dict(os.environ, AEVAE_THREADS=str(threads), PYTHONPATH=os.path.join(work, "src"), DVC_NO_ANALYTICS="1",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    dvc = [sys.executable, "-m", "dvc"]
    steps = [["git", "clone", "-q", git_url, "."], ["git", "checkout", "-q", baseline]]
    if shared_cache:  # this machine: the clones read and write this repository's cache and run-cache
        steps += [dvc + ["cache", "dir", "--local", shared_cache], dvc + ["checkout", "-q", "--allow-missing"]]
    else:
        steps += [dvc + ["pull", "-q", "--run-cache", "--allow-missing"]]
    sets = [a for o in overrides for a in ("-S", o)]
    if shared_cache:
        steps += [dvc + ["exp", "run", "-n", exp, *sets], dvc + ["exp", "push", "-f", "--no-cache", "origin", exp]]
    else:  # stages in the remote's run-cache come from there (--pull); this one's go back with their outputs
        steps += [dvc + ["exp", "run", "--pull", "-n", exp, *sets], dvc + ["exp", "push", "-f", "origin", exp],
                  [sys.executable, "-m", "aevae.runcache", "push"]]
    subprocess.run([sys.executable, "-c", f"from aevae.sweep import watch; watch({os.getpid()}, {work!r})"],
                   check=True, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = ""
    try:
        for cmd in steps:
            run = subprocess.run(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            log += run.stdout
            if run.returncode:
                return {"error": _error_line(run.stdout, cmd)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"ran": re.findall(r"^Running stage '([^']+)'", log, re.M),
            "cached": re.findall(r"^Stage '([^']+)' is cached", log, re.M), "seconds": time.time() - started}


def watch(worker: int, work: str) -> None:
    """Once `worker` is gone with its task unfinished, kill every process still working in its clone
    `work` (the stages under `dvc exp run`) and remove the clone. Ray reaps a dead worker's children
    only while the node's raylet lives, and then only the direct ones; so this runs detached from the
    worker, and finds the stages by their working folder, whatever process group they are in."""
    import psutil  # a dependency of DVC's and Ray's

    if os.fork():
        os._exit(0)

    def alive(pid):
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    while os.path.isdir(work) and alive(worker):
        time.sleep(0.5)
    while os.path.isdir(work):  # the task ended here unfinished: its stages may still be starting others
        stray = [p for p in psutil.process_iter(["cwd"]) if p.info["cwd"] and
                 (p.info["cwd"] == work or p.info["cwd"].startswith(work + os.sep))]
        for proc in stray:
            proc.kill()
        psutil.wait_procs(stray, timeout=5)
        if not stray:
            shutil.rmtree(work, ignore_errors=True)


def _error_line(out: str, cmd: list[str]) -> str:
    """The line that says what went wrong: the stage's own `error:` line, else DVC's or git's last."""
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    for prefix in ("error:", "ERROR:", "fatal:"):
        found = [line for line in lines if line.startswith(prefix)]
        if found:
            return found[0] if prefix == "error:" else found[-1]
    return f"{' '.join(cmd[-3:])} exited with: {lines[-1] if lines else 'no output'}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m aevae.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUES",
                   help="as dvc exp run --queue -S: key=a,b or key=range(a,b); several make a grid")
    p.add_argument("--address", help="an existing Ray cluster (auto, host:port or ray://host:10001); "
                                     "default: a cluster of this machine alone")
    p.add_argument("--cpus", type=int, help="cores an experiment takes, and its AEVAE_THREADS "
                                            "(default: this machine's cores / the experiments at once; 1 on a cluster)")
    p.add_argument("--gpus", type=float, default=0, help="GPUs an experiment takes (with -S device... params)")
    p.add_argument("--retries", type=int, default=RETRIES, help="reruns of an experiment whose worker or node dies")
    p.add_argument("--git-remote", default="origin", help="the git remote the cluster's clones push to")
    args = p.parse_args(argv)
    try:
        return sweep(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def sweep(args) -> int:
    sweep_points = sweeps(args.set_param)
    root = git(".", "rev-parse", "--show-toplevel")
    baseline = git(root, "rev-parse", "HEAD")
    dirty = git(root, "status", "--porcelain", "--untracked-files=no")
    if dirty:
        raise UserError(f"uncommitted changes ({dirty.splitlines()[0].split()[-1]} …): the sweep's clones see "
                        "only commits; commit them (or git stash) and run again")
    if args.address:
        git_url = git(root, "remote", "get-url", args.git_remote)
        if not git(root, "branch", "-r", "--contains", baseline):
            raise UserError(f"commit {baseline[:7]} is not on {args.git_remote}: git push {args.git_remote} HEAD, "
                            "dvc push and python -m aevae.runcache push, then run again")
        shared_cache = None
    else:
        git_url, shared_cache = root, subprocess.run([sys.executable, "-m", "dvc", "cache", "dir"], cwd=root,
                                                    capture_output=True, text=True, check=True).stdout.strip()
    points = {name(o): o for o in sweep_points}
    if len(points) < len(sweep_points):
        raise UserError("two experiments of this sweep would share a name: give each value once")
    done = existing(git_url, baseline)
    for exp in sorted(set(points) & done):
        print(f"skipped  {exp}: already an experiment of {baseline[:7]}", flush=True)
    todo = {exp: o for exp, o in points.items() if exp not in done}
    if todo:
        failed = launch(args, todo, git_url, baseline, shared_cache)
    else:
        failed = 0
    names = " ".join(points)
    if args.address:
        print(f"Bring them here: dvc exp pull {args.git_remote} {names} && dvc exp show")
    else:
        print("Compare them: dvc exp show  (or python -m aevae.summary)")
    return 1 if failed else 0


class Events:
    """The tasks' starts, as (experiment, node id, node IP), for the driver to take as they come."""

    def __init__(self):
        self.items = []

    def put(self, item):
        self.items.append(item)

    def take(self) -> list:
        items, self.items = self.items, []
        return items


def launch(args, todo: dict[str, list[str]], git_url: str, baseline: str, shared_cache: str | None) -> int:
    """Run `todo` as Ray tasks, one line per event and a bar for the sweep; the number that failed."""
    import ray
    from tqdm import tqdm

    if args.address:
        cpus = args.cpus or 1
        ray.init(address=args.address, log_to_driver=False)
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        cpus = args.cpus or max(1, cores // min(len(todo), cores))
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20)
    events = ray.remote(num_cpus=0)(Events).remote()
    task = ray.remote(run_experiment).options(num_cpus=cpus, num_gpus=args.gpus, max_retries=args.retries)
    refs = {}
    for exp, overrides in todo.items():
        refs[task.remote(git_url, baseline, exp, overrides, cpus, shared_cache, events)] = exp
        print(f"queued   {exp}: {' '.join(overrides)} ({cpus} cores)", flush=True)
    starts, failed = {}, 0
    with tqdm(total=len(refs), desc="sweep", unit="exp", file=sys.stderr) as bar:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
            for exp, node, ip in ray.get(events.take.remote()):
                starts[exp] = starts.get(exp, 0) + 1
                what = "started " if starts[exp] == 1 else "retried "
                note = "" if starts[exp] == 1 else f" (attempt {starts[exp]}: the last one's worker or node died)"
                bar.write(f"{what} {exp} on node {node[:8]} ({ip}){note}")
            for ref in ready:
                exp = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as e:  # its worker or node died once more than --retries allow
                    result = {"error": f"gave up after {args.retries + 1} attempts: {type(e).__name__}"}
                if "error" in result:
                    failed += 1
                    bar.write(f"failed   {exp}: {result['error']}")
                else:
                    bar.write(f"finished {exp} in {result['seconds']:.0f} s: ran {', '.join(result['ran']) or 'nothing'}"
                              f"; from the run-cache: {', '.join(result['cached']) or 'nothing'}")
                bar.update()
    ray.shutdown()
    return failed


if __name__ == "__main__":
    sys.exit(main())
