"""Grading a class's submitted notebooks: the instructors' tool behind ``make grade``.

``python -m unittests.grade SUBMISSIONS --out grades.csv`` runs :mod:`unittests.grading.grade`.
The modules, one job each:

- ``grade``: the command line, the class and one notebook in a fresh kernel;
- ``cells``: which cells of a submission run, and what a cell defines;
- ``points``: the points table (which grader checks which exercise, and its weight);
- ``recorder``: the kernel side, which records every grader's report;
- ``forkkernel``: fresh kernels forked from a process that has imported the kit once;
- ``gradebook``: ``grades.csv`` and ``feedback/<learner>.md``.

Learners never import this package: their graders are the ``unittests.test_*`` functions.
"""
