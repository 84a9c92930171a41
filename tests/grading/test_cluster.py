"""The cluster files of docs/grading/: the grader's image, the Kubernetes Jobs and the Slurm scripts.

No container engine or cluster is at hand here, so each file is checked as far as it can be: the
Dockerfile is parsed for what the Job relies on, the YAML is loaded and its fields checked, the shell
scripts are parsed (``bash -n``) and their shard arithmetic run. Then a class is graded the way a
cluster would grade it: one process per shard on this machine, each with the environment its pod or
array task gets (``JOB_COMPLETION_INDEX``, ``SLURM_ARRAY_TASK_ID``...) and the command its file holds,
then the merge file's command; the merged gradebook must equal one run's.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from tools import publish

ROOT = Path(__file__).resolve().parents[2]
GRADING = ROOT / "docs" / "grading"
LABEL = {"app.kubernetes.io/part-of": "grade-class"}


def _objects(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((GRADING / name).read_text()) if doc]


def _one(name: str, kind: str) -> dict:
    (found,) = [doc for doc in _objects(name) if doc["kind"] == kind]
    return found


GRADE_JOB = _one("grade-job.yaml", "Job")
MERGE_JOB = _one("merge-job.yaml", "Job")


def _pod(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


def _container(job: dict) -> dict:
    (container,) = _pod(job)["containers"]
    return container


def _env(job: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in _container(job).get("env", [])}


def _script(job: dict) -> str:
    container = _container(job)
    assert container["command"] == ["bash", "-c"] and len(container["args"]) == 1
    return container["args"][0]


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of docs/grading/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (GRADING / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _requirement(name: str) -> str:
    """The kit's requirement on ``name``, as pyproject.toml writes it."""
    tomllib = pytest.importorskip("tomllib")
    requirements = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (found,) = [r for r in requirements if re.match(rf"{name}\b(?![-_])", r)]
    return found


# ---------------------------------------------------------------------------------------
# The image
# ---------------------------------------------------------------------------------------

def test_dockerfile_installs_cpu_torch_then_the_kit_where_the_job_runs_it():
    steps = _dockerfile()
    (base,) = [args for op, args in steps if op == "FROM"]
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in environment["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert base == f"python:{python.split('=')[1]}-slim"  # the Python the course is tested with

    runs = [args for op, args in steps if op == "RUN"]
    torch_step = next(i for i, args in enumerate(runs) if "download.pytorch.org/whl/cpu" in args)
    kit_step = next(i for i, args in enumerate(runs) if 'pip install -e ".[grading]"' in args)
    assert torch_step < kit_step  # the kit's install finds the CPU build in place
    assert "torch.version.cuda is None" in runs[kit_step]  # ... and the build checks it kept it
    for name in ("torch", "torchvision"):
        assert f'"{_requirement(name)}"' in runs[torch_step], f"{name}: not pyproject.toml's bounds"

    assert [args for op, args in steps if op == "WORKDIR"] == [_container(GRADE_JOB)["workingDir"]] == ["/srv/kit"]
    assert ("COPY", ". /srv/kit") in steps
    assert [args for op, args in steps if op == "USER"] == [str(_pod(GRADE_JOB)["securityContext"]["runAsUser"])]
    assert any("useradd --uid 1000" in args for args in runs)


def test_binder_keeps_its_own_build():
    # repo2docker builds a Dockerfile at the root (or in binder/) instead of environment.yml and postBuild
    assert not (ROOT / "Dockerfile").exists() and not (ROOT / "binder").exists()
    ignored = (GRADING / "Dockerfile.dockerignore").read_text().split()
    assert {".git", ".venv", "checkpoints", "artifacts"} <= set(ignored) and "data/*" in ignored


# ---------------------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------------------

def test_grading_job_is_indexed_bounded_and_retries_per_shard():
    spec = GRADE_JOB["spec"]
    shards = int(_env(GRADE_JOB)["SHARDS"])
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == shards
    assert spec["backoffLimitPerIndex"] >= 1 and "backoffLimit" not in spec  # not a budget shared by all shards
    assert 0 < spec["activeDeadlineSeconds"] <= 24 * 3600
    assert _pod(GRADE_JOB)["restartPolicy"] == "Never"  # what backoffLimitPerIndex requires
    rules = spec["podFailurePolicy"]["rules"]
    assert {"action": "FailIndex", "onExitCodes": {"containerName": "grade", "operator": "In", "values": [2]}} in rules


@pytest.mark.parametrize("job", [GRADE_JOB, MERGE_JOB], ids=["grade", "merge"])
def test_pods_hold_no_credentials_and_no_privilege(job):
    pod, container = _pod(job), _container(job)
    assert pod["automountServiceAccountToken"] is False
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] == 1000
    assert context["fsGroup"] == 1000  # the volumes' root-owned files become writable for the grader
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert _env(job)["HOME"] in mounts  # a read-only root: the kernels' runtime files need a writable home
    assert job["spec"]["template"]["metadata"]["labels"] == LABEL  # the NetworkPolicy selects it
    assert "$(" not in _script(job)  # Kubernetes itself would expand $(NAME) in args


def test_network_policy_cuts_the_grading_pods_off():
    policy = _one("grade-job.yaml", "NetworkPolicy")
    assert policy["spec"]["podSelector"] == {"matchLabels": LABEL}
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in policy["spec"] and "egress" not in policy["spec"]  # no rule: nothing allowed


def test_volumes_are_read_write_many_and_mounted_where_the_commands_look():
    claims = {doc["metadata"]["name"]: doc for doc in _objects("volumes.yaml") if doc["kind"] == "PersistentVolumeClaim"}
    assert all(claim["spec"]["accessModes"] == ["ReadWriteMany"] for claim in claims.values())
    assert "ReadWriteMany" in (GRADING / "volumes.yaml").read_text().split("apiVersion")[0]  # the note says why
    files_pod = _one("volumes.yaml", "Pod")
    for job in (GRADE_JOB, MERGE_JOB, {"spec": {"template": {"spec": files_pod["spec"]}}}):
        pod = _pod(job)
        used = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
                if "persistentVolumeClaim" in v}
        assert set(used.values()) <= set(claims)
    for job in (GRADE_JOB, MERGE_JOB):
        mounts = {m["name"]: m["mountPath"] for m in _container(job)["volumeMounts"]}
        env = _env(job)
        assert env["GRADES"] == mounts["grades"]
        if "SUBMISSIONS" in env:
            assert env["SUBMISSIONS"] == mounts["submissions"]
            assert {"name": "submissions", "mountPath": env["SUBMISSIONS"], "readOnly": True} in \
                _container(job)["volumeMounts"]


def test_no_unexplained_placeholder_and_one_image_at_the_release_tag():
    text = "\n".join(path.read_text() for path in sorted(GRADING.iterdir()))
    assert "example.org" not in text and "example.com" not in text
    images = {c["image"] for doc in _objects("grade-job.yaml") + _objects("merge-job.yaml") + _objects("volumes.yaml")
              if doc["kind"] in ("Job", "Pod")
              for c in (doc["spec"]["template"]["spec"] if doc["kind"] == "Job" else doc["spec"])["containers"]}
    (image,) = images  # one image for every pod
    assert re.fullmatch(rf"([^\s/]+/)*fashion-kit-grader:{re.escape(publish.current().tag)}", image), image
    header = (GRADING / "grade-job.yaml").read_text().split("apiVersion")[0]
    assert "docs/grading/Dockerfile" in header and "kind load" in header and "registry" in header
    assert publish.problems() == []  # the image's tag is the notebooks' TAG


# ---------------------------------------------------------------------------------------
# Shard arithmetic: the files' own commands, with a stand-in python that prints its arguments
# ---------------------------------------------------------------------------------------

def _echo_python(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    python = folder / "python"
    python.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    python.chmod(0o755)
    return python


def _shard_and_out(printed: str) -> tuple[str, str]:
    args = printed.split("\n")
    return args[args.index("--shard") + 1], args[args.index("--out") + 1]


def test_every_pod_of_the_indexed_job_grades_its_own_shard(tmp_path):
    bin_dir = _echo_python(tmp_path / "bin").parent
    shards = int(_env(GRADE_JOB)["SHARDS"])
    got = []
    for index in range(GRADE_JOB["spec"]["completions"]):
        env = {**_env(GRADE_JOB), "JOB_COMPLETION_INDEX": str(index), "PATH": f"{bin_dir}:/usr/bin:/bin"}
        run = subprocess.run(["bash", "-c", _script(GRADE_JOB)], env=env, capture_output=True, text=True, check=True)
        got.append(_shard_and_out(run.stdout))
    assert got == [(f"{i}/{shards}", f"/grades/part-{i}/grades.csv") for i in range(1, shards + 1)]


def _sbatch(name: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    python = _echo_python(tmp_path / "bin")
    full = {"PATH": "/usr/bin:/bin", "SLURM_SUBMIT_DIR": str(tmp_path), "PYTHON": str(python), **env}
    return subprocess.run(["bash", str(GRADING / name)], env=full, capture_output=True, text=True)


def _array(text: str) -> tuple[int, int]:
    first, last = re.search(r"^#SBATCH --array=(\d+)-(\d+)$", text, re.M).group(1, 2)
    return int(first), int(last)


def test_slurm_array_tasks_are_the_shards_one_to_n(tmp_path):
    for name in ("grade-array.sbatch", "grade-merge.sbatch"):
        subprocess.run(["bash", "-n", str(GRADING / name)], check=True)
    text = (GRADING / "grade-array.sbatch").read_text()
    first, last = _array(text)
    assert first == 1 and f"--array=1-{last}" in text.split("#SBATCH")[0]  # the header's example, the same
    array = {"SUBMISSIONS": "/class", "SLURM_ARRAY_TASK_COUNT": str(last), "SLURM_ARRAY_TASK_MIN": "1",
             "SLURM_ARRAY_TASK_MAX": str(last)}
    got = [_shard_and_out(_sbatch("grade-array.sbatch", tmp_path, SLURM_ARRAY_TASK_ID=str(i), **array).stdout)
           for i in range(1, last + 1)]
    assert got == [(f"{i}/{last}", f"grades/part-{i}/grades.csv") for i in range(1, last + 1)]

    # --array=0-3, as arrays often are: refused in one line that says what to submit
    zero = _sbatch("grade-array.sbatch", tmp_path, SUBMISSIONS="/class", SLURM_ARRAY_TASK_ID="0",
                   SLURM_ARRAY_TASK_COUNT="4", SLURM_ARRAY_TASK_MIN="0", SLURM_ARRAY_TASK_MAX="3")
    assert zero.returncode == 2 and "--array=1-4" in zero.stderr and len(zero.stderr.splitlines()) == 1
    # one shard again: --array=3 with SHARDS=4; without SHARDS it would be shard 3 of 1, so it is refused
    again = _sbatch("grade-array.sbatch", tmp_path, SUBMISSIONS="/class", SHARDS="4", SLURM_ARRAY_TASK_ID="3",
                    SLURM_ARRAY_TASK_COUNT="1", SLURM_ARRAY_TASK_MIN="3", SLURM_ARRAY_TASK_MAX="3")
    assert _shard_and_out(again.stdout) == ("3/4", "grades/part-3/grades.csv")
    alone = _sbatch("grade-array.sbatch", tmp_path, SUBMISSIONS="/class", SLURM_ARRAY_TASK_ID="3",
                    SLURM_ARRAY_TASK_COUNT="1", SLURM_ARRAY_TASK_MIN="3", SLURM_ARRAY_TASK_MAX="3")
    assert alone.returncode == 2 and "SHARDS" in alone.stderr
    missing = _sbatch("grade-array.sbatch", tmp_path, SLURM_ARRAY_TASK_ID="1", **{**array, "SUBMISSIONS": ""})
    assert missing.returncode != 0 and "SUBMISSIONS" in missing.stderr


def test_slurm_merge_runs_after_any_end_of_the_array():
    for text in ((GRADING / "grade-array.sbatch").read_text(), (GRADING / "grade-merge.sbatch").read_text(),
                 (ROOT / "docs" / "INSTRUCTORS.md").read_text()):
        assert "--dependency=afterany:" in text and "--dependency=afterok" not in text


def test_merges_take_every_part_the_shards_write(tmp_path):
    grades = tmp_path / "grades"
    for i in (1, 2, 3, 4):
        (grades / f"part-{i}").mkdir(parents=True)
        (grades / f"part-{i}" / "grades.csv").write_text("")
    bin_dir = _echo_python(tmp_path / "bin").parent
    run = subprocess.run(["bash", "-c", _script(MERGE_JOB)], env={**_env(MERGE_JOB), "GRADES": str(grades),
                         "PATH": f"{bin_dir}:/usr/bin:/bin"}, capture_output=True, text=True, check=True)
    parts = [str(grades / f"part-{i}" / "grades.csv") for i in (1, 2, 3, 4)]
    assert run.stdout.split("\n")[:-1] == ["-m", "unittests.grade", "--merge", *parts, "--out",
                                           str(grades / "grades.csv")]
    slurm = _sbatch("grade-merge.sbatch", tmp_path, GRADES=str(grades))
    assert slurm.stdout == run.stdout


# ---------------------------------------------------------------------------------------
# Simulation: a class graded shard by shard with the files' commands and environments, merged
# ---------------------------------------------------------------------------------------

NOTEBOOK = "02_inverted_residual_block"


def _class(root: Path) -> Path:
    """Five learners: two solutions, two untouched notebooks, one empty folder."""
    subs = root / "submissions"
    solution = nbformat.read(ROOT / "notebooks" / "solutions" / f"{NOTEBOOK}.ipynb", as_version=4)
    stub = nbformat.read(ROOT / "notebooks" / f"{NOTEBOOK}.ipynb", as_version=4)
    for learner, nb in (("ana", solution), ("bo", stub), ("cy", solution), ("dee", None), ("ed", stub)):
        (subs / learner).mkdir(parents=True)
        if nb is not None:
            nbformat.write(nb, subs / learner / f"{NOTEBOOK}.ipynb")
    return subs


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _pod_env(job: dict, paths: dict[str, Path], **extra: str) -> dict[str, str]:
    """The pod's environment, its mount paths mapped to folders here; ``python`` is this interpreter."""
    env = {}
    for name, value in _env(job).items():
        mount = next((m for m in paths if value == m or value.startswith(m + "/")), None)
        env[name] = str(paths[mount]) + value[len(mount):] if mount else value
    return {**os.environ, **env, "TMPDIR": env["HOME"], "PATH": f"{paths['bin']}:{os.environ['PATH']}", **extra}


def _python_shim(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shim = folder / "python"
    shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n")
    shim.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def cluster_runs(tmp_path_factory):
    """One plain run, then the Kubernetes pods and the Slurm tasks, each set of shards run side by side."""
    root = tmp_path_factory.mktemp("cluster")
    subs = _class(root)
    one = subprocess.run([sys.executable, "-m", "unittests.grade", str(subs), "--out", str(root / "one" / "grades.csv")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr

    # Kubernetes: the pods of the Indexed Job, then the merge Job, from the YAML
    paths = {"/submissions": subs, "/grades": root / "k8s", "/tmp": root / "k8s-home",
             "bin": _python_shim(root / "bin")}
    mounted = {m["mountPath"] for job in (GRADE_JOB, MERGE_JOB) for m in _container(job)["volumeMounts"]}
    assert mounted <= set(paths)  # every volume of the pods has a folder here
    paths["/tmp"].mkdir()
    pods = [subprocess.Popen(["bash", "-c", _script(GRADE_JOB)], cwd=ROOT, text=True,
                             env=_pod_env(GRADE_JOB, paths, JOB_COMPLETION_INDEX=str(index)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for index in range(GRADE_JOB["spec"]["completions"])]
    for pod in pods:
        out, err = pod.communicate(timeout=600)
        assert pod.returncode == 0, err
    merge = subprocess.run(["bash", "-c", _script(MERGE_JOB)], cwd=ROOT, env=_pod_env(MERGE_JOB, paths),
                           capture_output=True, text=True, timeout=120)
    assert merge.returncode == 0, merge.stderr

    # Slurm: the array's tasks, then the merge job, from the scripts (submitted from the kit's clone) with
    # `sbatch --array=1-2`: another N than the Job's, so that the shards split the class differently
    slurm_env = {**os.environ, "SLURM_SUBMIT_DIR": str(ROOT), "PYTHON": sys.executable, "SUBMISSIONS": str(subs),
                 "GRADES": str(root / "slurm"), "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "1",
                 "SLURM_ARRAY_TASK_MAX": "2"}
    tasks = [subprocess.Popen(["bash", str(GRADING / "grade-array.sbatch")], text=True,
                              env={**slurm_env, "SLURM_ARRAY_TASK_ID": str(i)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in (1, 2)]
    for task in tasks:
        out, err = task.communicate(timeout=600)
        assert task.returncode == 0, err
    merged = subprocess.run(["bash", str(GRADING / "grade-merge.sbatch")], env=slurm_env, capture_output=True,
                            text=True, timeout=120)
    assert merged.returncode == 0, merged.stderr
    return {"root": root, "paths": paths, "slurm_env": slurm_env}


@pytest.mark.slow
@pytest.mark.parametrize("cluster", ["k8s", "slurm"])
def test_shards_merged_on_the_cluster_equal_one_run(cluster_runs, cluster):
    root = cluster_runs["root"]
    one = (root / "one" / "grades.csv").read_text()
    assert (root / cluster / "grades.csv").read_text() == one
    assert _files(root / cluster / "feedback") == _files(root / "one" / "feedback")
    rows = one.splitlines()[1:]
    assert {row.split(",")[0] for row in rows} == {"ana", "bo", "cy", "dee", "ed"}
    shards = GRADE_JOB["spec"]["completions"] if cluster == "k8s" else 2
    assert sorted(p.name for p in (root / cluster).glob("part-*")) == [f"part-{i}" for i in range(1, shards + 1)]


@pytest.mark.slow
def test_a_missing_shard_fails_the_merge_and_is_named(cluster_runs, tmp_path):
    root = cluster_runs["root"]
    for cluster, shards, missing in (("k8s", GRADE_JOB["spec"]["completions"], 3), ("slurm", 2, 2)):
        grades = tmp_path / cluster
        for part in set(range(1, shards + 1)) - {missing}:  # the missing shard's pod or task failed
            shutil.copytree(root / cluster / f"part-{part}", grades / f"part-{part}")
        if cluster == "k8s":
            paths = {**cluster_runs["paths"], "/grades": grades}
            run = subprocess.run(["bash", "-c", _script(MERGE_JOB)], cwd=ROOT, env=_pod_env(MERGE_JOB, paths),
                                 capture_output=True, text=True, timeout=120)
        else:
            run = subprocess.run(["bash", str(GRADING / "grade-merge.sbatch")], capture_output=True, text=True,
                                 env={**cluster_runs["slurm_env"], "GRADES": str(grades)}, timeout=120)
        assert run.returncode != 0 and f"{missing}/{shards}" in run.stderr, (cluster, run.stdout, run.stderr)
        assert not (grades / "grades.csv").exists()
