# Two commands a newcomer needs: `make demo` and `make test`. Each creates .venv if
# missing and installs the project from its own files first.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test test-fast test-pi bench install clean apk

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# PYTHONWARNINGS: setuptools warns about every editable install of a flat layout (a
# reminder, not a problem); a clean install prints pip's own lines and nothing else.
$(STAMP): $(BIN)/python pyproject.toml
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fedge demo --out demo_out

# The full suite: the OpenAPI fuzz sends 12,000 generated requests here (1,500 in test-fast).
test: $(STAMP)
	FEDGE_FUZZ_EXAMPLES=12000 $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The emulated Raspberry Pi tests alone (scripts/pi-emulated.sh; needs debootstrap, root).
test-pi: $(STAMP)
	$(BIN)/python -m pytest -q -m pi

bench: $(STAMP)
	$(BIN)/python bench/export_bench.py

# The sample app's signed APK (android_sample/build-apk.sh; needs `bash android_sample/fetch-dependencies.sh`
# and Debian's aapt, zipalign, apksigner): android_sample/build/fedge-sample-debug.apk.
apk:
	bash android_sample/build-apk.sh

clean:
	rm -rf $(VENV) demo_out fleet_out .pytest_cache
