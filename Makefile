# Every target bootstraps .venv itself, so a fresh clone needs only Python >= 3.11 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8000
# Set TORCH_INDEX to a PyTorch wheel index (e.g. the CPU one, see README) to take torch from there.
TORCH_INDEX ?=
# The chapters' models are tiny: one CPU thread per process is about as fast on an idle machine and
# many times faster on a busy one, where PyTorch's spinning threads fight for the cores.
export OMP_NUM_THREADS ?= 1

.PHONY: book test assignments solutions grade serve clean venv nbgrader tools feedback export public

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed (nbgrader 0.9.6 requires it); set PYTHON=/path/to/python3.x")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install --quiet --index-url $(TORCH_INDEX) torch==$$(sed -n 's/^torch==//p' requirements.txt))
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Both editions from one execution: English in _build/html, Chinese in _build/html/zh (scripts/book.py;
# each is `jupyter-book build . -W -n --keep-going` with its language's settings).
book: $(STAMP)
	$(BIN)/python scripts/book.py
	@echo "Open _build/html/index.html, or run 'make serve' for http://localhost:$(PORT) (中文: /zh/)."

# JupyterHub's proxy, for the tests that start a real Hub (tests/test_service_hub.py)
CHP_VERSION := 5.3.0
CHP := .tools/node_modules/.bin/configurable-http-proxy

test: $(STAMP)
	@dpkg -s chromium chromium-driver fonts-noto-cjk postgresql >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium, chromium-driver and CJK fonts (browser tests) and postgresql (the service's PostgreSQL tests start their own server)"; \
	  $$([ "$$(id -u)" = 0 ] || echo sudo) sh -c 'apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-noto-cjk postgresql'; }
	@test -x $(CHP) || { \
	  command -v npm >/dev/null || $$([ "$$(id -u)" = 0 ] || echo sudo) sh -c 'apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm'; \
	  echo "Installing configurable-http-proxy into .tools/ for the JupyterHub tests"; \
	  npm install --silent --no-audit --no-fund --prefix .tools configurable-http-proxy@$(CHP_VERSION); }
	$(BIN)/python -m pytest

ASSIGNMENT_IDS := optimizers classification backprop

# nbgrader runs `alembic` (and, for autograde/feedback, `jupyter`) from PATH: every nbgrader command
# here runs with the venv first on PATH. `make tools` checks they are all there before anything runs.
NBGRADER := PATH="$(abspath $(BIN)):$$PATH" $(BIN)/nbgrader
tools: $(STAMP)
	@for t in nbgrader alembic jupyter autograder; do test -x $(BIN)/$$t || { \
	  echo "error: $(BIN)/$$t is missing; run 'make venv' (or remove $(STAMP) and retry)"; exit 1; }; done
	@$(BIN)/python -c 'import nbgrader, alembic, sqlalchemy' || { echo "error: nbgrader does not import in $(VENV)"; exit 1; }

# Student notebooks (and their visible test data) from the source notebooks in solutions/.
# `generate_assignment --force` deletes assignments/<a>/ before it writes anything: the old folder is
# kept aside and put back if anything fails, so a failed run never loses the released version.
# LANGUAGE=zh_CN (`make assignments LANGUAGE=zh_CN`): release the student notebooks in that language,
# each translated in place once generated, from locales/<LANGUAGE>/LC_MESSAGES/assignments/<a>.po
# (autograder/notebook_i18n.py: markdown instructions only; cells, tests and points unchanged).
# Empty: English. Only a LANGUAGE given on make's command line counts, not gettext's LANGUAGE
# variable in the environment (often en_US:en), which names a user's locale, not a course's release.
LANGUAGE ?=
assignments: tools
	@for a in $(ASSIGNMENT_IDS); do \
	  keep=$$(mktemp -d) && { [ ! -d assignments/$$a ] || cp -a assignments/$$a $$keep/; } && \
	  if $(NBGRADER) generate_assignment $$a --force --log-level=WARN && $(BIN)/python -m autograder.case $$a \
	    $(if $(and $(filter command line,$(origin LANGUAGE)),$(LANGUAGE)),&& $(BIN)/python -m autograder.notebook_i18n translate assignments/$$a/$$a.ipynb --language '$(LANGUAGE)'); then \
	    rm -rf $$keep; \
	  else \
	    echo "error: regenerating $$a failed; assignments/$$a is restored as it was"; \
	    rm -rf assignments/$$a; [ ! -d $$keep/$$a ] || cp -a $$keep/$$a assignments/$$a; rm -rf $$keep; exit 1; \
	  fi; \
	done

# Any other nbgrader command, with the environment it needs: make nbgrader ARGS='release_assignment optimizers'
ARGS ?=
nbgrader: tools
	@test -n "$(ARGS)" || { echo "usage: make nbgrader ARGS='<nbgrader command and options>'"; exit 2; }
	$(NBGRADER) $(ARGS)

# Grade submissions with the hardened autograder. The sandbox needs root: this target uses sudo
# unless you are root or run rootless (AUTOGRADER_CGROUP set, see README).
# Usage: make grade ASSIGNMENT=optimizers [SUBMISSIONS=submitted/] [WORKERS=N] [ENGINE=tcp://host:8786] [LMS_COLUMN='Optimizers (123)']
ASSIGNMENT  ?=
SUBMISSIONS ?= submitted/
WORKERS     ?=
ENGINE      ?=
LMS_COLUMN  ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || [ -n "$$AUTOGRADER_CGROUP" ] || echo sudo)

grade: tools
	@test -n "$(ASSIGNMENT)" || { echo "usage: make grade ASSIGNMENT=optimizers [SUBMISSIONS=submitted/] [WORKERS=N]"; exit 2; }
	$(SUDO) $(BIN)/autograder grade $(ASSIGNMENT) $(SUBMISSIONS) $(if $(WORKERS),--workers $(WORKERS)) $(if $(ENGINE),--engine $(ENGINE)) $(if $(LMS_COLUMN),--lms-column "$(LMS_COLUMN)")

# After hand grading in formgrader: nbgrader's feedback pages, released through the exchange.
feedback: tools
	@test -n "$(ASSIGNMENT)" || { echo "usage: make feedback ASSIGNMENT=optimizers"; exit 2; }
	$(BIN)/autograder export $(ASSIGNMENT)
	$(NBGRADER) generate_feedback $(ASSIGNMENT)
	$(NBGRADER) release_feedback $(ASSIGNMENT)

# Every grade, into grades/ (git-ignored): nbgrader's export of the whole gradebook, and per graded
# assignment our grades.csv, canvas.csv and moodle.csv refreshed with the hand-graded points.
export: tools
	@mkdir -p grades
	$(NBGRADER) export --to grades/nbgrader-export.csv
	@for d in grades/*/; do a=$$(basename $$d); [ ! -d solutions/$$a ] || $(BIN)/autograder export $$a || exit 1; done
	@echo "Grades: grades/nbgrader-export.csv and grades/<assignment>/{grades,canvas,moodle}.csv"

# The course as students may see it (no solutions/, no hidden tests, no instructor tests): a folder
# that builds the site and passes its own tests; publish this, not the repository.
PUBLIC ?= _build/public
public:
	$(PYTHON) scripts/public_tree.py $(PUBLIC)

serve:
	@test -f _build/html/index.html || { echo "No site yet: run 'make book' first."; exit 1; }
	@echo "Serving _build/html on http://localhost:$(PORT) (Ctrl-C stops it)"
	$(PYTHON) -m http.server $(PORT) --bind 127.0.0.1 --directory _build/html

clean:
	rm -rf _build
