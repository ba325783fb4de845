# Every target bootstraps .venv itself, so a fresh clone needs only Python >= 3.11 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8000
# Set TORCH_INDEX to a PyTorch wheel index (e.g. the CPU one, see README) to take torch from there.
TORCH_INDEX ?=
JB_FLAGS := -W -n --keep-going
# The chapters' models are tiny: one CPU thread per process is about as fast on an idle machine and
# many times faster on a busy one, where PyTorch's spinning threads fight for the cores.
export OMP_NUM_THREADS ?= 1

.PHONY: book test assignments solutions grade serve clean venv

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed (nbgrader 0.9.6 requires it); set PYTHON=/path/to/python3.x")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install --quiet --index-url $(TORCH_INDEX) torch==$$(sed -n 's/^torch==//p' requirements.txt))
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . $(JB_FLAGS)
	@echo
	@echo "The site is in _build/html (open _build/html/index.html, or run 'make serve' for http://localhost:$(PORT))."

test: $(STAMP)
	@dpkg -s chromium chromium-driver fonts-noto-cjk >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium, chromium-driver and CJK fonts for the browser tests"; \
	  $$([ "$$(id -u)" = 0 ] || echo sudo) sh -c 'apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-noto-cjk'; }
	$(BIN)/python -m pytest

ASSIGNMENT_IDS := optimizers classification backprop

# Student notebooks (and their visible test data) from the source notebooks in solutions/;
# nbgrader runs `alembic` from PATH, hence the venv on PATH.
assignments: $(STAMP)
	for a in $(ASSIGNMENT_IDS); do \
	  PATH="$(abspath $(BIN)):$$PATH" $(BIN)/nbgrader generate_assignment $$a --force --log-level=WARN && \
	  $(BIN)/python -m autograder.case $$a || exit 1; \
	done

# Grade submissions with the hardened autograder (the sandbox needs root: `sudo make grade ...`).
# Usage: make grade ASSIGNMENT=optimizers [SUBMISSIONS=submitted/] [WORKERS=N]
ASSIGNMENT  ?=
SUBMISSIONS ?= submitted/
WORKERS     ?=

grade: $(STAMP)
	@test -n "$(ASSIGNMENT)" || { echo "usage: make grade ASSIGNMENT=optimizers [SUBMISSIONS=submitted/] [WORKERS=N]"; exit 2; }
	$(BIN)/autograder grade $(ASSIGNMENT) $(SUBMISSIONS) $(if $(WORKERS),--workers $(WORKERS))

serve:
	@test -f _build/html/index.html || { echo "No site yet: run 'make book' first."; exit 1; }
	@echo "Serving _build/html on http://localhost:$(PORT) (Ctrl-C stops it)"
	$(PYTHON) -m http.server $(PORT) --bind 127.0.0.1 --directory _build/html

clean:
	rm -rf _build
