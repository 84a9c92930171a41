"""Grading a class's submitted notebooks: the instructors' tool behind ``make grade``.

``python -m unittests.grade SUBMISSIONS --out grades.csv`` runs :mod:`unittests.grading.grade`.
The modules, one job each:

- ``grade``: the command line, the class, one notebook in a fresh kernel, and the verdicts;
- ``collect``: what learners hand in (copies' names, a nested folder, zips, a roster), and what is ignored;
- ``submission``: the learners' folders, their names, and refused or safe copies of them;
- ``cells``: which cells of a submission run, and what a cell defines;
- ``points``: the points table (which grader checks which exercise, and its weight);
- ``kernels``: the grader's side of its kernels (starter, environment, message caps, isolation line);
- ``forkkernel``: the kernel starter (a zygote that has imported the kit) and the launcher per kernel;
- ``warden``: one kernel's supervisor: starts it sandboxed, watches it, ends every process it started;
- ``sandbox``: Linux namespaces, and process trees;
- ``recorder``: the kernel side: the audit hook that signs every grader's report, and the checks;
- ``channel``: the signed lines from a kernel to the grader;
- ``gradebook``: ``grades.csv``, ``totals.csv``, ``run.json``, the journal and ``feedback/<learner>.md``.

Learners never import this package: their graders are the ``unittests.test_*`` functions.
"""
