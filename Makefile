# Quick start: `make demo` runs the whole pipeline on the toy dataset,
# `make test` runs the test suite. Both create .venv on first use; the tests
# also install the optional ONNX packages (requirements-onnx.txt), so that the
# export and the onnxruntime backend are tested. The test run ends with its 15
# slowest steps, so a slower suite shows where the time went.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
STAMP := $(VENV)/.installed
ONNX_STAMP := $(VENV)/.installed-onnx
# Test worker processes; each test file runs whole in one of them (module fixtures are built once).
TEST_WORKERS ?= 2

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	$(PIP) --no-build-isolation visdom==0.2.4
	touch $(STAMP)

$(ONNX_STAMP): $(STAMP) requirements-onnx.txt
	$(PIP) -r requirements-onnx.txt
	touch $(ONNX_STAMP)

demo: $(STAMP)
	$(PY) pipeline.py

test: $(ONNX_STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

clean:
	rm -rf $(VENV) runs
