# Modelgate: `make run` serves the registry, `make test` runs the suite.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A second venv: the same dev environment with an MLflow 2.x client, to show older clients work.
VENV_MLFLOW2 ?= .venv-mlflow2
MLFLOW2 ?= mlflow-skinny==2.22.*
BIN_MLFLOW2 := $(VENV_MLFLOW2)/bin
STAMP_MLFLOW2 := $(VENV_MLFLOW2)/.installed

.PHONY: run test test-e2e test-mlflow2 lint deploy-check format install bench bench-mlflow \
	bench-longpoll bench-webhooks bench-history cluster soak clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The project with its dev extras, then the 2.x client over the pinned 3.x (pip downgrades what
# the older client needs, e.g. protobuf<7 and packaging<25); pip check proves the result is
# consistent (an extra's own pins, like modelgate[dev]'s mlflow-skinny, are not checked).
$(STAMP_MLFLOW2): pyproject.toml
	@test -x $(BIN_MLFLOW2)/python || $(PYTHON) -m venv $(VENV_MLFLOW2)
	$(BIN_MLFLOW2)/python -m pip install --quiet --upgrade pip
	$(BIN_MLFLOW2)/python -m pip install --quiet -e '.[dev]'
	$(BIN_MLFLOW2)/python -m pip install --quiet '$(MLFLOW2)'
	$(BIN_MLFLOW2)/python -m pip check
	@touch $(STAMP_MLFLOW2)

run: $(STAMP)
	$(BIN)/python deploy/run.py

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The browser tests alone, in Debian's chromium (apt-get install chromium); `make test` runs them
# too, but skips them without the browser: here a missing browser is a failure.
test-e2e: $(STAMP)
	MODELGATE_E2E_REQUIRED=1 $(BIN)/python -m pytest -m e2e $(PYTEST_ARGS)

# The MLflow client tests marked mlflow2, driven by the 2.x client (MLflow 3-only ones skip).
test-mlflow2: $(STAMP_MLFLOW2)
	$(BIN_MLFLOW2)/python -c 'import mlflow as m; print("mlflow", m.__version__); assert m.__version__[:2] == "2."'
	$(BIN_MLFLOW2)/python -m pytest tests/mlflow/test_client.py -m mlflow2 \
		-W "ignore:label() is deprecated:DeprecationWarning" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy accounts config registry workflows webhooks
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run

# The deployment files, offline (no Docker engine, no cluster): the Dockerfile through hadolint,
# deploy/docker-compose.yml and deploy/kubernetes/ against the compose specification's and
# Kubernetes' JSON schemas.
deploy-check: $(STAMP)
	$(BIN)/python deploy/check.py

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The same MLflow-registry workload against Modelgate and the real `mlflow server` (installed
# into bench/.mlflow-venv on first use); needs wrk, PostgreSQL and Redis on 127.0.0.1.
bench-mlflow: $(STAMP)
	$(BIN)/python bench/mlflow_compare.py $(BENCH_ARGS)

# Hundreds of waiting long-polls against the alias read's throughput, and how fast a move
# reaches them.
bench-longpoll: $(STAMP)
	$(BIN)/python bench/longpoll.py $(BENCH_ARGS)

# Committed events to a local webhook receiver through 2 Celery workers: latency and
# deliveries per second; needs DATABASE_URL (PostgreSQL) and REDIS_URL.
bench-webhooks: $(STAMP)
	$(BIN)/python bench/webhooks.py $(BENCH_ARGS)

# The history at scale: export 1,000,000 events (JSONL, CSV) over HTTP and verify them; needs
# PostgreSQL (DATABASE_URL names the server; a scratch database is made beside it).
bench-history: $(STAMP)
	$(BIN)/python bench/history.py $(BENCH_ARGS)

# Production-like on one machine: 2 web servers on one port, 2 workers, beat, PostgreSQL
# (DATABASE_URL, default database modelgate_cluster) and a Redis of its own on port 6391.
cluster: $(STAMP)
	$(BIN)/python deploy/cluster.py

# Ten minutes of mixed load against a fresh cluster, killing a worker and Redis once.
soak: $(STAMP)
	$(BIN)/python bench/soak.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(VENV_MLFLOW2) var
