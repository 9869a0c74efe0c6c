# Quick start: `make run` (set up, then the main job) and `make test` (set up, then the test suite).
# The environment is made once in .venv: conda (environment.yml) where conda exists, else venv + pip.

VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch is installed first: TORCH from the configured index, or from TORCH_INDEX when given (PyTorch's CPU
# wheel index for a CPU-only build; docs/install.md). On a GPU box use its CUDA build: `make TORCH=torch run`.
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=
STAMP  := $(VENV)/.installed

.PHONY: run test env clean

# The main job: notebooks/regression.ipynb through papermill (check + bench vs the stored baseline) on the
# detected backend; report.html, plots and the executed notebook land in out/regress/. Small defaults on cpu.
run: $(STAMP)
	$(VENV)/bin/workbench regress --out out/regress

# The suite runs in a process per logical CPU, at most 8 (pytest-xdist; `-n auto` counts physical cores, one
# on some 2-vCPU machines); `--dist loadgroup` keeps the tests of one xdist_group in one process.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -n logical --maxprocesses 8 --dist loadgroup

env: $(STAMP)

$(STAMP): pyproject.toml environment.yml
	@if [ ! -x "$(PY)" ]; then \
	  if command -v conda >/dev/null 2>&1; then conda env create -q -p $(VENV) -f environment.yml; \
	  else python3 -m venv $(VENV); fi; \
	fi
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(PY) -m pip install -q -e ".[test,notebook,models,team]"  # what the tests need
	$(PY) -m ipykernel install --sys-prefix  # kernel "python3" = this environment, for papermill and JupyterLab
	if git rev-parse --git-dir >/dev/null 2>&1; then $(VENV)/bin/nbstripout --install; fi  # outputs never committed
	touch $(STAMP)

clean:
	rm -rf $(VENV)
