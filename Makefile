# Quick start: `make demo` runs the whole pipeline on the toy dataset,
# `make test` runs the test suite. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation visdom==0.2.4
	touch $(STAMP)

demo: $(STAMP)
	$(PY) pipeline.py

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs
