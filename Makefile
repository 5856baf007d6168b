# Two commands on a fresh machine:
#   make demo   install Tessera and compile the embedded default model (configs/nemotron_h_tiny.yaml) for this
#               CPU (x86), then generate tokens with the compiled code
#   make test   install Tessera with its test and mlir extras and run the lit and pytest suites
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out/nemotron_h_tiny

.PHONY: install install-test install-lld demo test lint wheel-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e '.[mlir]'

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test,mlir]'

# ld.lld links the rocdl target's loadable code objects (.hsaco); without it the target writes the
# relocatable object and says so. Debian's lld-22 matches the project's LLVM 22.
install-lld:
	@command -v ld.lld >/dev/null || command -v ld.lld-22 >/dev/null || test -x /usr/lib/llvm-22/bin/ld.lld || \
		(apt-get update -qq && apt-get install -y -qq lld-22 >/dev/null)

demo: install
	$(BIN)/tessera-compile configs/nemotron_h_tiny.yaml --target x86 -o $(OUT)
	$(BIN)/tessera-run $(OUT) --target x86 --input-ids 5,7,9,11,13 --max-new-tokens 16 --json

test: install-test
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/lit -q test
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -q -n 2 test

# The wheel route: build the wheel, install it with the mlir extra into a fresh venv, and from outside the
# checkout import every module, compile the tiny model for every target and run it on reference and x86.
wheel-check: $(BIN)/python
	PYTHON="$(abspath $(BIN))/python" .ci/wheel-check

# mypy sees the repository as what it is, the `tessera` package (a link in a scratch folder), so that the
# imports between its modules are checked; `mypy .` would resolve them to nothing.
lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@root=$$(mktemp -d) && ln -s "$(CURDIR)" "$$root/tessera" && cd "$$root" && \
		"$(CURDIR)/$(BIN)/mypy" --config-file "$(CURDIR)/pyproject.toml" --cache-dir "$(CURDIR)/.mypy_cache" \
		-p tessera; status=$$?; rm -rf "$$root"; exit $$status

clean:
	rm -rf out build *.egg-info test/**/Output
