"""Throughput benchmark: the grader's engines beside baselines, in one run.

Generates N course-style notebooks from the samples (correct and wrong, a
tenth of them carrying megabytes of image outputs), then measures:

* grader, fork engine (the default), with -j JOBS;
* grader, kernel engine, and --full, on a subset;
* the raw floor: a warmed process forking one child per notebook that only
  runs the two graded functions on the cases the grader runs;
* the baseline: a bare nbclient run of each notebook (subset), and
  `nbgrader autograde` when nbgrader is installed (not measured otherwise).

Prints notebooks per second, the ratio to the baseline, per-notebook latency
percentiles and the peak memory of one grading process.

    python benchmarks/throughput.py --notebooks 1000 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "student_submissions"


def generate(folder: Path, count: int) -> list[Path]:
    samples = sorted(p for p in SAMPLES.glob("*.ipynb") if p.name != "truncated.ipynb")
    paths = []
    for index in range(count):
        content = json.loads(samples[index % len(samples)].read_text(encoding="utf-8"))
        cells = content.get("cells") or content["worksheets"][0]["cells"]
        cells.insert(0, {"cell_type": "markdown", "metadata": {},
                         "source": f"Submission {index}"})
        for cell in cells:
            # Each student's graded cells are their own; the course's cells
            # are the same in every notebook, as in a real batch.
            key = "source" if "source" in cell else "input"
            text = "".join(cell.get(key) or "")
            if cell.get("cell_type") == "code" and "def " in text:
                cell[key] = text + f"\n# student {index}\n"
        if index % 10 == 3 and "cells" in content:
            for cell in cells:
                if cell["cell_type"] == "code":
                    cell.setdefault("outputs", []).append(
                        {"output_type": "display_data", "metadata": {},
                         "data": {"image/png": "iVBOR" + "A" * 400_000}})
        path = folder / f"student_{index:06d}.ipynb"
        path.write_text(json.dumps(content), encoding="utf-8")
        paths.append(path)
    return paths


def run_grader(folder: Path, jobs: int, *extra: str) -> dict:
    out = folder.parent / f"out-{time.monotonic_ns()}.json"
    gradebook = folder.parent / f"gb-{time.monotonic_ns()}.sqlite"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "grader", "grade", str(folder), "-q",
                    "-j", str(jobs), "--json", str(out), "--gradebook", str(gradebook),
                    *extra], check=True, stdout=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    report = json.loads(out.read_text(encoding="utf-8"))
    latencies = [s["seconds"] for s in report["submissions"] if s.get("seconds")]
    return {"seconds": elapsed, "count": len(report["submissions"]),
            "latencies": latencies, "peak_mb": peak / 1024}


FLOOR_CHILD = r"""
import json, os, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from grader_inkernel import legacy_backend
legacy_backend.install("standin")
from keras import backend as K
from grader_inkernel.runtime import _decode_input as decode

work = json.loads(sys.stdin.read())
cases = {name: [[[decode(v) for v in args] for args in case["calls"]]
                for case in request["cases"]]
         for name, request in work["requests"].items()}
started = time.monotonic()
for source in work["sources"]:
    pid = os.fork()
    if pid == 0:
        namespace = {"np": np, "K": K}
        try:
            exec(source, namespace)
        except BaseException:
            os._exit(0)
        for name, calls_of_cases in cases.items():
            for calls in calls_of_cases:
                try:
                    target = namespace[name]
                    for args in calls:
                        target = target(*args)
                except BaseException:
                    pass
        os._exit(0)
    os.waitpid(pid, 0)
print(time.monotonic() - started)
"""


def raw_floor(paths: list[Path]) -> float:
    """Seconds for a warmed process to fork once per notebook and run the two
    functions on every case the grader runs (public and hidden), nothing
    else: no reading, sandbox, observing or judging. The sources are
    extracted beforehand, outside the timing."""
    sys.path.insert(0, str(ROOT))
    from grader.assignment import load_assignment
    from grader.executing import KernelPackage
    from grader.locating import locate
    from grader.probing import probe_request
    from grader.reading import read_notebook

    assignment = load_assignment()
    names = [function.name for function in assignment.functions]
    requests = {name: probe_request(name, assignment.cases_for(name), 5.0)
                for name in names}
    sources = []
    for path in paths:
        located = locate(read_notebook(path), names)
        sources.append("\n".join(s.source for s in located.snippets
                                 if s.kind != "import"))
    package = KernelPackage()
    try:
        done = subprocess.run([sys.executable, "-c", FLOOR_CHILD, package.path],
                              input=json.dumps({"sources": sources,
                                                "requests": requests}),
                              capture_output=True, text=True, check=True)
    finally:
        package.close()
    return float(done.stdout.strip().splitlines()[-1])


def bare_nbclient(paths: list[Path], jobs: int) -> float:
    import warnings

    import nbformat
    from nbclient import NotebookClient

    # The samples are old enough to have no cell ids, as many submissions;
    # the kernels' start-up warnings would bury the benchmark's figures.
    warnings.filterwarnings("ignore", message="Cell is missing an id field")

    def run(path: Path) -> None:
        notebook = nbformat.read(str(path), as_version=4)
        with tempfile.TemporaryDirectory() as workdir:
            NotebookClient(notebook, kernel_name="python3", timeout=60,
                           allow_errors=True,
                           extra_arguments=["--IPKernelApp.log_level=ERROR"],
                           resources={"metadata": {"path": workdir}}).execute()

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(run, paths))
    return time.monotonic() - started


#: The tests an nbgrader course would put in its autograded cells: the
#: public case for each function, as instructors write them with asserts.
NBGRADER_TESTS = """\
import numpy as np
labels = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 1], [0, 0, 1]])
pos, neg = compute_class_freqs(labels)
assert np.allclose(pos, [0.5, 0.25, 1.0])
assert np.allclose(neg, [0.5, 0.75, 0.0])
y_true = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
y_pred = np.array([[0.9, 0.2], [0.3, 0.6], [0.8, 0.7]])
loss = get_weighted_loss(np.array([0.4, 0.6]), np.array([0.6, 0.4]), 1e-7)
value = float(np.asarray(loss(y_true, y_pred)))
assert np.isclose(value, 0.31839, atol=1e-4), value
"""


def _with_nbgrader_tests(path: Path, target: Path) -> None:
    """`path` as nbgrader receives it: a v4 notebook ending with a locked,
    autograded test cell worth 20 points."""
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    cell = nbformat.v4.new_code_cell(NBGRADER_TESTS)
    cell.metadata["nbgrader"] = {
        "grade": True, "solution": False, "locked": True, "points": 20,
        "grade_id": "tests", "schema_version": 3, "task": False}
    notebook.cells.append(cell)
    notebook.metadata["kernelspec"] = {
        "name": "python3", "display_name": "Python 3", "language": "python"}
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(target))


def nbgrader_autograde(paths: list[Path], nbgrader: str, folder: Path) -> float | None:
    """Seconds for `nbgrader autograde` to grade `paths` as submissions of
    one student each, in a course folder of its own. The assignment is
    generated beforehand, outside the timing. None when nbgrader fails."""
    course = folder / "nbgrader-course"
    (course / "source" / "bench").mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        "c.CourseDirectory.course_id = 'bench'\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        "c.ExecuteMixin.timeout = 60\n", encoding="utf-8")
    _with_nbgrader_tests(paths[0], course / "source" / "bench" / "chest_xray.ipynb")
    for index, path in enumerate(paths):
        _with_nbgrader_tests(path, course / "submitted" / f"student{index:04d}"
                             / "bench" / "chest_xray.ipynb")

    def nbgrader_run(*arguments: str) -> bool:
        # nbgrader runs tools of its own environment (alembic) by name.
        bin_folder = str(Path(nbgrader).resolve().parent)
        env = {**os.environ, "PATH": bin_folder + os.pathsep + os.environ["PATH"]}
        done = subprocess.run([nbgrader, *arguments], cwd=course, env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(f"nbgrader {arguments[0]} failed: "
                  f"{(done.stderr.strip().splitlines() or [''])[-1]}")
        return done.returncode == 0

    if not nbgrader_run("generate_assignment", "bench", "--force"):
        return None
    started = time.monotonic()
    if not nbgrader_run("autograde", "bench", "--create"):
        return None
    return time.monotonic() - started


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=int, default=400)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--baseline-notebooks", type=int, default=20,
                        help="notebooks for the slow engines and baselines")
    parser.add_argument("--cluster", default=None, metavar="ADDRESS",
                        help="also grade the whole batch on this Dask cluster "
                             "(local:N starts a local one)")
    parser.add_argument("--nbgrader", default=None, metavar="COMMAND",
                        help="the nbgrader command for the autograde baseline "
                             "(default: nbgrader on PATH)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="grader-bench-"))
    try:
        batch = work / "batch"
        batch.mkdir()
        paths = generate(batch, args.notebooks)
        # Written out before any timing: the first run must not compete
        # with the disk writing the batch.
        os.sync()
        subset = work / "subset"
        subset.mkdir()
        for path in paths[: args.baseline_notebooks]:
            shutil.copy(path, subset)
        subset_paths = sorted(subset.glob("*.ipynb"))

        # The start-up alone: as many notebooks as workers, one each.
        first = work / "first"
        first.mkdir()
        for path in paths[: args.jobs]:
            shutil.copy(path, first)

        rows = []
        fork = run_grader(batch, args.jobs)
        rows.append(("grader, fork engine", fork["count"], fork["seconds"], fork))
        started = run_grader(first, args.jobs)
        # One worker beside the one-process floor: the same cores for both.
        alone = run_grader(batch, 1) if args.jobs != 1 else fork
        started_alone = run_grader(first, 1) if args.jobs != 1 else started
        if args.jobs != 1:
            rows.append(("grader, fork engine, -j 1", alone["count"],
                         alone["seconds"], alone))
        if args.cluster:
            on_cluster = run_grader(batch, args.jobs, "--cluster", args.cluster)
            rows.append((f"grader on {args.cluster}", on_cluster["count"],
                         on_cluster["seconds"], on_cluster))
        kernel = run_grader(subset, args.jobs, "--engine", "kernel")
        rows.append(("grader, kernel engine", kernel["count"],
                     kernel["seconds"], kernel))
        full = run_grader(subset, args.jobs, "--full")
        rows.append(("grader --full", full["count"], full["seconds"], full))
        floor = raw_floor(paths)
        rows.append(("raw floor (1 process)", len(paths), floor, None))
        bare = bare_nbclient(subset_paths, args.jobs)
        rows.append(("baseline: bare nbclient", len(subset_paths), bare, None))
        nbgrader = args.nbgrader or shutil.which("nbgrader")
        autograde = (nbgrader_autograde(subset_paths, nbgrader, work)
                     if nbgrader else None)
        if autograde is None:
            print("nbgrader is not installed (or failed): its autograde "
                  "baseline is not measured; --nbgrader names its command")
        else:
            rows.append(("baseline: nbgrader autograde", len(subset_paths),
                         autograde, None))

        baseline_rate = len(subset_paths) / bare
        print(f"{'run':26} {'notebooks':>9} {'seconds':>8} {'nb/s':>8} "
              f"{'x baseline':>10} {'p50 s':>7} {'p95 s':>7} {'peak MB':>8}")
        for name, count, seconds, detail in rows:
            rate = count / seconds
            latencies = detail["latencies"] if detail else []
            peak = f"{detail['peak_mb']:8.0f}" if detail else f"{'':>8}"
            print(f"{name:26} {count:9d} {seconds:8.2f} {rate:8.1f} "
                  f"{rate / baseline_rate:10.1f} {percentile(latencies, .5):7.3f} "
                  f"{percentile(latencies, .95):7.3f} {peak}")
        if autograde is not None:
            fork_rate = fork["count"] / fork["seconds"]
            autograde_rate = len(subset_paths) / autograde
            print(f"fork engine vs nbgrader autograde: "
                  f"{fork_rate / autograde_rate:.0f} x its throughput")
        print("fork engine vs raw floor (same notebooks, "
              f"-j {args.jobs} vs 1 process): "
              f"{fork['seconds'] / floor:.2f} x the floor's time; with -j 1: "
              f"{alone['seconds'] / floor:.2f} x")
        # The floor's warming is not timed; the grader's start-up (imports,
        # the reference's outputs, the sandboxes) is taken out the same way:
        # the time a batch takes beyond grading one notebook per worker.
        floor_each = floor / len(paths)
        for label, whole, start, jobs in (("", fork, started, args.jobs),
                                          (", -j 1", alone, started_alone, 1)):
            each = (whole["seconds"] - start["seconds"]) / (whole["count"] - jobs)
            print(f"once started{label}: {each * 1000:.1f} ms per notebook "
                  f"({1 / each:.0f} nb/s, start-up {start['seconds']:.2f} s) against "
                  f"the floor's {floor_each * 1000:.1f} ms: {each / floor_each:.2f} x")
        if fork["latencies"]:
            print(f"mean latency {statistics.mean(fork['latencies']):.3f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
