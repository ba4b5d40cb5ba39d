"""Homework: assignments written once with their reference solutions, a generated student release, and a grader.

Layout (the repository's `homework/` folder; one folder per assignment, e.g. `homework/hw1/`):

    hw1.py             the questions: each a function whose body is the reference solution between
                       `# BEGIN SOLUTION` and `# END SOLUTION` lines (otter-grader's and nbgrader's markers)
    hw1_notebook.py    the student's notebook (jupytext percent format): the derivations, pictures, and a
                       "check your work" cell that runs the public tests
    test_public.py     tests the student gets; each marked `@pytest.mark.question("q1", points=1)`
    test_hidden.py     tests only the grader runs (other shapes, dtypes, schedules, edge t)
    mutants.py         instructor-only: realistic student mistakes and the questions each must lose points on
    assignment.json    title, questions (id -> title), the modules a submission may import, time limits

`release` (`python -m minidiff homework release hw1 --out DIR`) writes the student's folder: every solution block
replaced by `raise NotImplementedError`, the hidden tests, the mutants and the instructors' files left out.
`grade` (`python -m minidiff homework grade hw1 SUBMISSION`) runs the public and hidden tests against a submission
in a child process (`runner`) and scores each question by the points of its passing tests.

Why not otter-grader or nbgrader themselves (both evaluated, version 7.0.0 and 0.9.6 on the package index):
otter-grader's `otter grade` runs each submission in Docker, and its package pulls in pandas, nbconvert[webpdf]
(a headless browser), python-on-whales and ipylab; nbgrader needs a Jupyter server stack, a course database and
executes notebooks through kernels. Neither fits "offline, inside `make test`, on a 2-core CPU, without Docker".
So grading is built on pytest, with their conventions: otter's and nbgrader's solution markers, nbgrader's
`raise NotImplementedError` stub, points per test like Gradescope's and otter's test metadata, public vs hidden
tests like otter's.
"""
