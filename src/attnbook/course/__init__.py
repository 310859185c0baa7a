"""Course tooling, apart from the models: one module per job.

* :mod:`~attnbook.course.check`: the result checks every chapter calls
  (``from attnbook import check`` is the same module).
* :mod:`~attnbook.course.exercises`: the exercise checks, one module per chapter
  (``exercises/chNN.py``; ``from attnbook import exercises`` is the same package).
* :mod:`~attnbook.course.markers`: nbgrader's solution and hidden-test markers, and
  finding a chapter's exercises.
* :mod:`~attnbook.course.student`: student versions (solutions replaced by stubs).
* :mod:`~attnbook.course.grading`: grading a folder of submissions, each in its own
  sandboxed kernel; :mod:`~attnbook.course.worker` runs one submission and computes
  every verdict outside the submission's kernel; :mod:`~attnbook.course.wire` carries
  arguments and results between them as plain data; :mod:`~attnbook.course.sandbox`
  starts the kernel with limits (memory, CPU, files, network, writes outside its folder).
* :mod:`~attnbook.course.reports`: ``grades.csv`` and ``grades.json``.
* :mod:`~attnbook.course.scaffold`: ``new-chapter``, a new chapter's skeleton.
* :mod:`~attnbook.course.cli`: ``python -m attnbook.course student|grade|new-chapter``.

Importing this package imports nothing heavy; nbformat and nbclient are needed only
for student versions and grading (``pip install attnbook[course]``).
"""
