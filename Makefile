# The kit's commands. `make lab` sets everything up and starts JupyterLab; `make test` runs every check.
# Each target is idempotent: a second run skips the work already done.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# STAMP: the course and JupyterLab, what `make lab` needs; DEV_STAMP: + the grader, the going-further stack and the
# test tools (`make test`)
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
LAB_PORT ?= 8888
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)  # containers often run as root; Jupyter refuses it otherwise
# nbval executes each notebook once; tools.course_report prints the numbers they printed, per notebook, at the end
NBVAL_FLAGS := -p tools.course_report --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=3600 -p no:cacheprovider --durations=10

.PHONY: help setup going-further data dev-data lab test test-units test-fast test-notebooks test-browser release fork fork-args grade grade-args bench bench-scale bench-pipeline bench-siamese bench-course export-onnx serve loadtest

help:
	@echo "make lab        set up .venv, fetch the data, start JupyterLab on notebooks/"
	@echo "make data [ARCHIVE=path.zip]  fetch the verified dataset into data/ (from a local copy of the archive)"
	@echo "make test       set up .venv, fetch the data, run the whole test suite (nbval included)"
	@echo "make test-fast  the fast unit tests only"
	@echo "make test-browser  JupyterLab in headless Chromium: notebook 06's widget, an unfinished exercise, reopened bars (screenshots in artifacts/browser/)"
	@echo "make grade SUBMISSIONS=path  grade a class's notebooks: grading-output/ beside them (docs/INSTRUCTORS.md)"
	@echo "make release    regenerate the learner notebooks and helper_utils/reference/ from notebooks/solutions/"
	@echo "make fork ORG=owner [TAG=name]  point the Colab cells and README links at your fork (docs/INSTRUCTORS.md)"
	@echo "make going-further  install what notebooks 09-10 need (FAISS, ONNX, FastAPI)"
	@echo "make bench      train the tutorial, core and going-further recipes (3 seeds), rewrite the README table"
	@echo "make bench-scale  exact vs FAISS search on 1M synthetic embeddings (docs/results/scale.md, ~6 min)"
	@echo "make bench-pipeline  time the data pipelines (python -m tools.bench pipeline)"
	@echo "make bench-siamese  notebook 05's recipe with one change at a time, from notebook 03's backbone"
	@echo "make bench-course  execute the six core solution notebooks under nbval, report times and results"
	@echo "make export-onnx  export the encoder and classifier to ONNX, check parity, time both (docs/results/onnx.md)"
	@echo "make serve      start the search service on 127.0.0.1:8000 (builds models and index first if needed)"
	@echo "make loadtest [BASELINE=commit]  a bounded loopback load test of the service (docs/results/service.md)"

setup: $(STAMP)

# Each re-installs only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[lab]'
	touch $@

# One resolve for everything (dev holds lab): a fresh clone's `make test` installs once. A current pip first:
# the one a venv starts with may not read `name @ git+file://...@tag` (the Colab cell's install, tested).
$(DEV_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $@

going-further: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[going-further]'

# ARCHIVE=path/to/clothing-dataset-small-master.zip takes that local copy instead of downloading (no internet)
data: $(STAMP)
	$(BIN)/python -m helper_utils.data fetch $(if $(ARCHIVE),--archive "$(ARCHIVE)")

dev-data: $(DEV_STAMP) data

lab: data
	$(BIN)/jupyter lab --notebook-dir=notebooks --port=$(LAB_PORT) $(ROOT_FLAG) $(LAB_ARGS)

# The release checks, the unit tests, then every solution notebook executed once under nbval. One after the
# other: run side by side on 2 cores, notebook 03's training took 717 s instead of 305 s (its two torch threads
# wait on each other while the unit tests hold a core), so the pair took as long and the printed times lied.
test: dev-data
	$(BIN)/python -m tools.release --check
	$(BIN)/python -m tools.release --clean --check
	$(MAKE) --no-print-directory test-units test-notebooks

# One thread for every process the unit tests start (kernels included): their tensors are tiny, and a second,
# spinning thread only slows them on a busy 2-core machine. pytest-xdist runs UNIT_WORKERS test processes, each
# taking whole files (--dist loadfile), so a file's module fixtures (a graded class, the cluster run) run once.
# A test that hangs fails after 10 minutes (the slowest, fixture included, takes about one) instead of holding CI.
UNIT_WORKERS ?= auto
test-units: $(DEV_STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests -n $(UNIT_WORKERS) --dist loadfile --timeout 600 $(PYTEST_ARGS)

test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest tests -m "not slow"

# Opt-in: installs Debian's chromium if missing (Playwright drives it; never `playwright install`).
# Two tests at a time, each with its own JupyterLab and Chromium: most of a test is waiting for them
# (on the 2-core CI machine the four tests took 52 s this way against 70 s one after the other).
test-browser: dev-data
	command -v chromium >/dev/null || .ci/install-chromium
	FASHION_KIT_BROWSER=1 PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BIN)/python -m pytest tests/browser -p no:cacheprovider -n 2 $(PYTEST_ARGS)

test-notebooks: dev-data
	UNITTESTS_STRICT=1 $(BIN)/python -m pytest $(NBVAL_FLAGS) notebooks/solutions --course-report artifacts/course_results.json $(NBVAL_ARGS)

release: $(DEV_STAMP)
	$(BIN)/python -m tools.release --clean
	$(BIN)/python -m tools.release

# Instructors: point every Colab cell, the README's Colab and Binder links and the grading image at a fork.
# ORG is the fork's GitHub owner (owner/name if renamed); TAG a release tag of its own (default <owner>-v<version>).
fork-args:
	@test -n "$(ORG)" || { echo "usage: make fork ORG=your-github-owner [TAG=your-release-tag]"; exit 2; }

fork: fork-args $(DEV_STAMP)
	$(BIN)/python -m tools.fork --org "$(ORG)" $(if $(TAG),--tag "$(TAG)")

# Instructors: one folder or .zip per learner in SUBMISSIONS; writes grading-output/ beside SUBMISSIONS
# (GRADES=path/grades.csv for another place), with totals.csv, run.json and feedback/<learner>.md.
# GRADE_ARGS passes options on, e.g. GRADE_ARGS="--roster roster.csv" or "--notebooks 02_inverted_residual_block".
GRADES ?=
grade-args:  # checked before the install, so a forgotten SUBMISSIONS fails at once
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=path/to/submissions [GRADES=out/grades.csv] [GRADE_ARGS=...]"; exit 2; }

grade: grade-args $(DEV_STAMP)
	$(BIN)/python -m unittests.grade "$(SUBMISSIONS)" $(if $(GRADES),--out "$(GRADES)") $(GRADE_ARGS)

# About 45 minutes on a 2-core CPU; a GPU is used when present. Writes docs/results/bench_results.{json,md}.
bench: dev-data
	$(BIN)/python -m tools.bench results $(BENCH_ARGS)

bench-scale: dev-data
	$(BIN)/python -m tools.scale_bench --n 1000000 --json docs/results/scale_results.json --plot docs/results/scale_recall_latency.png --markdown docs/results/scale.md

bench-pipeline: dev-data
	$(BIN)/python -m tools.bench pipeline --json artifacts/bench_pipeline.json

# Notebook 05's recipe with one change at a time, from notebook 03's backbone (about 5 minutes on a 2-core CPU)
bench-siamese: dev-data
	$(BIN)/python -m tools.siamese_sweep --json docs/results/siamese_sweep.json

# Going further (notebook 10): export to ONNX, serve the search on 127.0.0.1:$(PORT), load-test it.
PORT ?= 8000
export-onnx: dev-data
	$(BIN)/python -m tools.onnx_bench --out artifacts/onnx --report docs/results/onnx.md

serve: dev-data
	$(BIN)/python -m helper_utils.going_further.serve --port $(PORT)

# BASELINE=<git commit> measures that commit's service too, side by side (e.g. BASELINE=7a30068)
loadtest: dev-data
	$(BIN)/python -m tools.loadtest --requests 300 --concurrency 4 $(if $(BASELINE),--baseline $(BASELINE) --rounds 4) --report docs/results/service.md

# The six core notebooks, executed and checked by nbval, with their times and printed results.
bench-course: dev-data
	UNITTESTS_STRICT=1 $(BIN)/python -m pytest $(NBVAL_FLAGS) notebooks/solutions/0[1-6]_*.ipynb --course-report artifacts/course_results.json
